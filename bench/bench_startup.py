"""Start-up time of the command line, whole process, against `import torch` measured in the same run.

    python bench/bench_startup.py [--runs 7]

`vqtool --help`, `--version` and a command's `--help` should not import torch (tests/test_structure.py
checks that); this measures what that buys. Medians of several runs (the machine is shared and noisy).
"""

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "vqtool --help": [sys.executable, "-m", "vqtool", "--help"],
    "vqtool --version": [sys.executable, "-m", "vqtool", "--version"],
    "vqtool encode --help": [sys.executable, "-m", "vqtool", "encode", "--help"],
    "vqtool train fader --help": [sys.executable, "-m", "vqtool", "train", "fader", "--help"],
    "vqtool models list": [sys.executable, "-m", "vqtool", "models", "list"],
    "vqtool encode (one image)": [sys.executable, "-m", "vqtool", "encode", "docs/demo.png", "-o", "-"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    times = {name: [] for name in CASES}
    for _ in range(args.runs):  # interleaved, so that drifting load hits every case alike
        for name, command in CASES.items():
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    torch_time = statistics.median(times["import torch"])
    print(f"{'command':28} {'median s':>9} {'/ import torch':>15}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:28} {median:9.3f} {median / torch_time:15.2f}")


if __name__ == "__main__":
    main()
