"""Batched decode (issue 18): `vqtool decode` sends records through the model in batches and writes
images from a thread pool, and must give exactly what decoding each record alone gives."""

import shutil
import zipfile

import vqtool
from vqtool.media import encode_image

from conftest import ROOT, run_cli


def test_batched_decode_equals_one_at_a_time_byte_for_byte(tmp_path, shared_data):
    folder = tmp_path / "in"
    folder.mkdir()
    with zipfile.ZipFile(shared_data / "cifar10" / "test.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:40]  # held-out test images
        for i, name in enumerate(names):
            (folder / f"{i:02d}.jpg").write_bytes(archive.read(name))
    shutil.copy(ROOT / "docs" / "demo.png", folder / "zz-demo.png")  # another size in the same stream
    assert run_cli("encode", folder, "-o", tmp_path / "all.vqc").returncode == 0
    assert run_cli("encode", folder, "-o", tmp_path / "codes").returncode == 0
    result = run_cli("decode", tmp_path / "all.vqc", "-o", tmp_path / "batched")
    assert result.returncode == 0, result.stderr
    singles = sorted((tmp_path / "codes").glob("*.vqc"))
    assert len(singles) == 41
    for path in singles:
        alone = encode_image(vqtool.decode_file(path))
        assert (tmp_path / "batched" / f"{path.stem}.png").read_bytes() == alone, path.stem
