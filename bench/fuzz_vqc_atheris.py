"""Coverage-guided fuzzing of the `.vqc` reader with atheris (optional; not part of CI).

    pip install atheris
    python bench/fuzz_vqc_atheris.py -atheris_runs=200000      # or -max_total_time=600

Seeds are valid records of both formats (format 2 as written today, format 1 as vqtool 0.1 wrote it).
Anything but a VqtoolError or a valid list of records is a finding: atheris stops and writes the input.
Half of the inputs get their format-2 header CRC recomputed, so that mutations reach the header parser.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
with atheris.instrument_imports():
    import numpy as np

    from vqtool.codes import CodeFile
    from vqtool.errors import VqtoolError
from test_codes import v1_record  # noqa: E402  (the test suite's helpers)
from test_fuzz import check_records, refresh_header_crc  # noqa: E402


def seeds() -> list[bytes]:
    image = {"kind": "image", "width": 16, "height": 16, "channels": 3, "name": "x"}
    audio = {"kind": "audio", "sample_rate": 16000, "samples": 8 * 320, "code_rate": 50.0}
    codes = np.arange(16).reshape(4, 4)
    out = [CodeFile(codes, "cifar10", "ab" * 32, 512, image).to_bytes(),
           CodeFile(codes, "cifar10", "ab" * 32, 512, image).to_bytes(b"\x12\x34\x56"),
           CodeFile(np.arange(8), "speech", "cd" * 32, 512, audio, {"voice": "AAAA"}).to_bytes(),
           v1_record(codes, media=image)]
    return out


def test_one_input(data: bytes) -> None:
    if data and data[0] & 1:
        data = refresh_header_crc(data[1:])
    try:
        check_records(data)
    except VqtoolError:
        pass


if __name__ == "__main__":
    import os
    import tempfile

    corpus = tempfile.mkdtemp(prefix="vqc-corpus-")
    for i, seed in enumerate(seeds()):
        for prefix in (b"\x00", b"\x01"):
            with open(os.path.join(corpus, f"seed{i}-{prefix[0]}"), "wb") as handle:
                handle.write(prefix + seed)
    atheris.Setup(sys.argv + [corpus], test_one_input)
    atheris.Fuzz()
