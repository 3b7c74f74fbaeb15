"""Binary attributes of images, for Fader Networks and attribute classifiers: rules such as
`smile`, `male=gender:male` or `young=age<30`, labels tables, and train/held-out splits by name list."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..errors import VqtoolError
from ..hub import sha256_file
from . import fingerprint, refuse_test_split
from .images import ImageSet, _entries, load_images

_RULE = re.compile(r"^(?P<name>[A-Za-z_][\w-]*)(?:=(?P<column>[\w-]+)(?P<op>:|<=|>=|<|>)(?P<value>.+))?$")


@dataclass
class Attribute:
    """One binary attribute and how it is read from the data (kept in checkpoints as `rule`).

    `smile`: the image's parent folder is named smile (or, with a labels table, a 0/1 column `smile`);
    `male=gender:male`: the labels table's column equals the value; `young=age<30`: a numeric comparison.
    """

    name: str
    column: str | None = None
    op: str | None = None
    value: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "Attribute":
        match = _RULE.match(spec.strip())
        if not match:
            raise VqtoolError(f"bad attribute '{spec}' (write NAME, NAME=COLUMN:VALUE or NAME=COLUMN<NUMBER)")
        return cls(**match.groupdict())

    @property
    def rule(self) -> str:
        return self.name if self.column is None else f"{self.column}{self.op}{self.value}"

    def holds(self, name: str, row: dict | None) -> bool:
        if row is None:
            return Path(name).parent.name == self.name
        column = self.column or self.name
        if column not in row:
            raise VqtoolError(f"labels table has no column '{column}' (has {', '.join(row)})")
        cell = row[column].strip()
        if self.op is None:
            return cell.lower() in ("1", "true", "yes", self.name.lower())
        if self.op == ":":
            return cell.lower() == self.value.lower()
        try:
            number, limit = float(cell), float(self.value)
        except ValueError:
            raise VqtoolError(f"'{cell}' in column '{column}' is not a number (needed by {self.rule})") from None
        return {"<": number < limit, "<=": number <= limit, ">": number > limit, ">=": number >= limit}[self.op]


def read_name_list(path: str | Path) -> set[str]:
    """A split file: one image name per line (as inside the data's folder or zip)."""
    try:
        return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    except OSError as exc:
        raise VqtoolError(f"cannot read the split list ({exc.strerror})", str(path)) from None


def read_labels(path: str | Path) -> dict[str, dict]:
    """A CSV table with a `file` column (image name as inside the data) and any label columns."""
    import csv

    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise VqtoolError(f"cannot read the labels table ({exc.strerror})", str(path)) from None
    if not rows or "file" not in rows[0]:
        raise VqtoolError("labels table needs a header row with a 'file' column", str(path))
    return {row["file"]: row for row in rows}


def image_mode(path: str | Path) -> str:
    """'L' when the data's first image is grayscale, else 'RGB'."""
    name, read = _entries(Path(path))[0]
    return "L" if Image.open(io.BytesIO(read())).mode in ("L", "1", "I", "I;16") else "RGB"


def load_attribute_set(path: str | Path, attributes: list[Attribute], labels: str | Path | None = None,
                       mode: str = "RGB", size: int | None = None, select: set[str] | None = None,
                       exclude: set[str] | None = None, limit: int | None = None) -> ImageSet:
    """Images with a (N, A) float 0/1 label matrix, one column per attribute (`classes` = their names).
    With a labels table, images it does not list are left out."""
    table = read_labels(labels) if labels else None
    if table is not None:
        select = set(table) if select is None else select & set(table)
    images = load_images(path, size=size, mode=mode, select=select, exclude=exclude, limit=limit)
    matrix = [[float(a.holds(name, table[name] if table else None)) for a in attributes] for name in images.names]
    images.labels, images.classes = torch.tensor(matrix), [a.name for a in attributes]
    for column, attribute in enumerate(attributes):
        share = float(images.labels[:, column].mean())
        if share in (0.0, 1.0):
            raise VqtoolError(f"attribute '{attribute.name}' ({attribute.rule}) is {'never' if share == 0 else 'always'} "
                              "true in the data; a slider needs both values", str(path))
    return images


def attribute_splits(path: str | Path, specs: list[str], labels: str | Path | None = None,
                     holdout: str | Path | None = None, size: int | None = None, mode: str | None = None,
                     limit: int | None = None, eval_limit: int | None = None):
    """(train, held_out or None, provenance) for attribute data. The held-out names come from `holdout`,
    by default a test.txt beside the data; they are never in the training set, and neither is that
    test.txt when `holdout` names another list (a validation list must not let the test split in)."""
    path = Path(path)
    refuse_test_split(path)
    if not path.exists():
        raise VqtoolError("no such file or directory", str(path))
    attributes = [Attribute.parse(spec) for spec in specs]
    if len({a.name for a in attributes}) != len(attributes):
        raise VqtoolError(f"attribute names repeat in {', '.join(specs)}")
    test_list = path.parent / "test.txt"
    test_names = read_name_list(test_list) if test_list.is_file() else set()
    holdout = holdout or (test_list if test_names else None)
    held_names = read_name_list(holdout) if holdout else set()
    mode = mode or image_mode(path)
    train = load_attribute_set(path, attributes, labels, mode, size, exclude=held_names | test_names, limit=limit)
    held_out = None
    if held_names:
        held_out = load_attribute_set(path, attributes, labels, mode, size, select=held_names, limit=eval_limit)
    left_out = sorted({Path(p).name for p in (holdout, test_list if test_names else None) if p})
    info = {"train_data": str(path), "train_split": "all but " + " and ".join(left_out) if left_out else "all",
            "train_items": len(train), "train_sha256": fingerprint(path),
            "labels": str(labels) if labels else "parent folder names",
            "labels_sha256": sha256_file(Path(labels)) if labels else None,
            "attributes": {a.name: a.rule for a in attributes},
            "positive_share": {a.name: round(float(train.labels[:, i].mean()), 4) for i, a in enumerate(attributes)},
            "eval_data": f"{path} (files listed in {holdout})" if held_out is not None else None,
            "eval_split": Path(holdout).name if held_out is not None else None,
            "eval_sha256": sha256_file(Path(holdout)) if held_out is not None else None}
    return train, held_out, info
