"""A non-editable install finds the shipped models: a wheel built from the repository, installed into
a folder of its own, lists them and encodes with them from another working directory."""

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_wheel_carries_the_models(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(ROOT), "-w", str(wheels)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("vqtool-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target), "VQTOOL_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}

    def vqtool(*args):
        return subprocess.run([sys.executable, "-m", "vqtool", *args], capture_output=True, cwd=tmp_path, env=env,
                              timeout=300)

    where = subprocess.run([sys.executable, "-c", "import vqtool; print(vqtool.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(target)), where.stdout  # the installed copy, not the repository
    listed = vqtool("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {"cifar10", "speech", "faces-smile"} <= {r["name"] for r in records}
    assert all(r["path"].startswith(str(target)) and r["bundled"] for r in records)
    encoded = vqtool("encode", str(ROOT / "docs" / "demo.png"), "-o", "-")
    assert encoded.returncode == 0 and encoded.stdout.startswith(b"VQC"), encoded.stderr
