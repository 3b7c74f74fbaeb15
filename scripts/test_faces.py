"""Copy N held-out faces of a face dataset, evenly spaced through its test.txt (not picked by hand), into
a folder, for demos and the README's example grids:
`python scripts/test_faces.py ../shared/data/smiles/smiles.zip 8 out/faces`."""

import sys
import zipfile
from pathlib import Path


def main(archive: str, count: str, folder: str) -> None:
    archive_path, out = Path(archive), Path(folder)
    names = [line.strip() for line in (archive_path.parent / "test.txt").read_text().splitlines() if line.strip()]
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive_path) as source:
        step = max(1, len(names) // int(count))
        for index, name in enumerate(names[::step][:int(count)]):
            (out / f"{index + 1:02d}-{Path(name).name}").write_bytes(source.read(name))


if __name__ == "__main__":
    main(*sys.argv[1:])
