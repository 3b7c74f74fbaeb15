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


def test_range_coded_records_decode_together_as_each_alone(tmp_path, shared_data):
    """Range-coded records of one grid share one walk of the prior; each must decode to exactly its
    own pixels, and a corrupt one fails alone (the others still decode)."""
    with zipfile.ZipFile(shared_data / "cifar10" / "test.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[100:112]
        for i, name in enumerate(names):
            (tmp_path / f"{i:02d}.jpg").write_bytes(archive.read(name))
    records = [vqtool.encode_file(path, compress=True) for path in sorted(tmp_path.glob("*.jpg"))]
    bad = bytearray(records[5])
    bad[-3] ^= 0x5A  # payload corrupted: the header CRC still holds, the codes' CRC will not
    (tmp_path / "mixed.vqc").write_bytes(b"".join(records[:5] + [bytes(bad)] + records[6:]))
    result = run_cli("decode", tmp_path / "mixed.vqc", "-o", tmp_path / "out")
    assert result.returncode == 1
    errors = [line for line in result.stderr.decode().splitlines() if "error" in line]
    assert len(errors) == 1 and "record 6" in errors[0], errors
    for i, record in enumerate(records):
        if i == 5:
            continue
        alone = encode_image(vqtool.decode_file(record))
        name = f"mixed-{i + 1}.png" if i else "mixed.png"  # records without a name in their header
        assert (tmp_path / "out" / name).read_bytes() == alone, i
