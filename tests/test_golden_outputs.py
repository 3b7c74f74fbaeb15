"""The outputs of a fixed set of commands, byte for byte, against SHA-256s recorded before the family
layout moved the code (issue 13): a refactor must not change what users get.

Recorded with `VQTOOL_RECORD_GOLDEN=1 python -m pytest tests/test_golden_outputs.py`, and only then:
a change that is meant to alter outputs re-records them and says so in its commit. Paths in stdout
and stderr are replaced by placeholders; everything runs single-threaded (OMP_NUM_THREADS=1), so the
float results do not depend on the number of cores.
"""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

GOLDEN = Path(__file__).parent / "golden" / "outputs.json"
RECORD = bool(os.environ.get("VQTOOL_RECORD_GOLDEN"))


def commands(data: Path) -> list[tuple[str, list[str], list[str]]]:
    """(label, arguments, output files to hash); OUT stands for the output folder, FACES for its faces."""
    theo = data / "fsdd" / "recordings" / "7_theo_0.wav"
    unseen = data / "speechocean" / "audio" / "0003" / "000030012.flac"
    return [
        ("encode image", ["encode", "docs/demo.png", "-o", "OUT/demo.vqc", "--json"], ["demo.vqc"]),
        ("inspect", ["inspect", "OUT/demo.vqc", "--json"], []),
        ("inspect text", ["inspect", "OUT/demo.vqc"], []),
        ("decode image", ["decode", "OUT/demo.vqc", "-o", "OUT/demo.png", "--json"], ["demo.png"]),
        ("encode compress", ["encode", "docs/demo.png", "--compress", "-o", "OUT/small.vqc"], ["small.vqc"]),
        ("decode compress", ["decode", "OUT/small.vqc", "-o", "OUT/small.png"], ["small.png"]),
        ("encode two", ["encode", "docs/demo.png", "OUT/small.png", "-o", "OUT/two.vqc"], ["two.vqc"]),
        ("decode grid", ["decode", "OUT/two.vqc", "-o", "OUT/two.png"], ["two.png"]),
        ("compare", ["compare", "docs/demo.png", "OUT/demo.png", "--json"], []),
        ("sample", ["sample", "--class", "cat", "-n", "4", "--seed", "1", "-o", "OUT/cats.png"], ["cats.png"]),
        ("sample codes", ["sample", "--codes", "-n", "2", "--seed", "3", "-o", "OUT/sampled.vqc"], ["sampled.vqc"]),
        ("encode audio", ["encode", str(theo), "-o", "OUT/theo.vqc", "--json"], ["theo.vqc"]),
        ("decode audio", ["decode", "OUT/theo.vqc", "-o", "OUT/theo.wav"], ["theo.wav"]),
        ("decode audio voice", ["decode", "OUT/theo.vqc", "--to", "spk3", "-o", "OUT/theo-spk3.flac", "--json"],
         ["theo-spk3.flac"]),
        ("convert-voice", ["convert-voice", str(theo), "--to-voice", str(unseen), "-o", "OUT/converted.wav"],
         ["converted.wav"]),
        ("speakers", ["speakers", "--json"], []),
        ("fade grid", ["fade", "FACES/01.jpg", "FACES/02.jpg", "--grid", "smile=0:1:4", "-o", "OUT/sweep.png"],
         ["sweep.png"]),
        ("fade paste", ["fade", "FACES/utk.jpg", "--male", "0.1", "--young", "0.9", "--paste", "-o",
                        "OUT/pasted.png", "--json"], ["pasted.png"]),
        ("models info", ["models", "info", "cifar10", "--json"], []),
        ("models info text", ["models", "info", "faces-utk"], []),
        ("models list", ["models", "list"], []),
        ("bad input", ["decode", "docs/demo.png", "OUT/demo.vqc", "-o", "OUT/bad/"], []),
        ("usage error", ["encode", "docs/demo.png", "--compress", "-o", "-", "--json"], []),
    ]


def faces(data: Path, folder: Path) -> None:
    """Three held-out faces, the first of each test list (never trained on)."""
    import zipfile

    folder.mkdir()
    for archive, names in ((data / "smiles" / "smiles.zip", ["01.jpg", "02.jpg"]),
                           (data / "utkface" / "utkface-64.zip", ["utk.jpg"])):
        listed = [line.strip() for line in (archive.parent / "test.txt").read_text().splitlines() if line.strip()]
        with zipfile.ZipFile(archive) as source:
            for name, member in zip(names, listed):
                (folder / name).write_bytes(source.read(member))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def placeholders(text: str, out: Path, data: Path) -> str:
    """Machine-specific paths and the terminal's wrapping out of the way."""
    for path, name in ((out, "OUT"), (data, "DATA"), (ROOT, "ROOT")):
        text = text.replace(str(path), name)
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def observed(shared_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("golden")
    faces(shared_data, out / "faces")
    results = {}
    for label, args, files in commands(shared_data):
        args = [a.replace("OUT", str(out)).replace("FACES", str(out / "faces")) for a in args]
        result = run_cli(*args, cwd=ROOT, env={"VQTOOL_HOME": str(out / "home")})
        results[label] = {"exit": result.returncode,
                          "stdout": placeholders(result.stdout.decode(errors="replace"), out, shared_data),
                          "stderr": placeholders(result.stderr.decode(errors="replace"), out, shared_data),
                          "files": {name: digest((out / name).read_bytes()) if (out / name).is_file() else None
                                    for name in files}}
    return results


def cards() -> dict:
    """Each shipped checkpoint's card as the renderer writes it now."""
    from vqtool.cards import render_card
    from vqtool.hub import read_metadata

    return {path.stem: digest(render_card(read_metadata(path)).encode())
            for path in sorted((ROOT / "models").glob("*.safetensors"))}


def test_outputs_unchanged(observed):
    if RECORD:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"commands": observed, "cards": cards()}, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {GOLDEN}")
    expected = json.loads(GOLDEN.read_text())["commands"]
    assert sorted(observed) == sorted(expected)
    for label in expected:
        for key in ("exit", "files", "stdout", "stderr"):
            assert observed[label][key] == expected[label][key], f"{label}: {key} changed"


def test_cards_unchanged():
    if RECORD:
        pytest.skip("recorded with the outputs")
    assert cards() == json.loads(GOLDEN.read_text())["cards"]
