"""Flickr8k captions (../shared/data/flickr8k-1k): reading the caption tables, the splits, the
tokeniser and the vocabulary built from training text.

Splits: `test.txt` names the 96 held-out photos (never trained on, their captions never read as
training text); `VALIDATION_IMAGES` more photos, drawn with a fixed seed from the rest, are the
validation set (model choices are made on them); the remaining photos and their captions train.
`all_captions.txt` adds the captions of the 7,091 Flickr8k photos that are not in the folder, as text
without pictures (for the language side); captions of the folder's own photos are read from
`captions.txt` only, so no validation or test caption leaks in through it.

Tokeniser and vocabulary: `vqtool.data.text`, built from the training text (paired captions and the
extra text)."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import VqtoolError

VALIDATION_IMAGES = 50
SPLIT_SEED = 8091


def read_caption_table(path: Path) -> dict[str, list[str]]:
    """`image,caption` rows (CSV, header line) -> {image: [captions in file order]}."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VqtoolError(f"cannot read the caption table ({exc})", str(path)) from None
    table: dict[str, list[str]] = {}
    try:
        for row in csv.reader(io.StringIO(text)):
            if len(row) < 2 or row[0] == "image":
                continue
            table.setdefault(row[0].strip(), []).append(",".join(row[1:]).strip())
    except csv.Error as exc:
        raise VqtoolError(f"not a caption table ({exc})", str(path)) from None
    if not table:
        raise VqtoolError("no `image,caption` rows", str(path))
    return table


@dataclass
class CaptionSplits:
    root: Path
    train: dict[str, list[str]]  # image file name -> its captions
    validation: dict[str, list[str]]
    test: dict[str, list[str]]
    extra_text: list[str]  # captions of Flickr8k photos not in the folder (no picture)
    info: dict

    def image_path(self, name: str) -> Path:
        return self.root / "images" / name


def flickr_splits(root: str | Path, validation: int = VALIDATION_IMAGES, extra_text: bool = True) -> CaptionSplits:
    from . import fingerprint, refuse_test_split

    root = Path(root)
    refuse_test_split(root)
    table = read_caption_table(root / "captions.txt")
    test_file = root / "test.txt"
    test_names = set(test_file.read_text().split()) if test_file.is_file() else set()
    if not (root / "images").is_dir():
        raise VqtoolError("no images/ folder", str(root))
    rest = sorted(n for n in table if n not in test_names)
    if len(rest) <= validation:
        raise VqtoolError(f"{len(rest)} training photos; need more than the {validation} kept for validation", str(root))
    shuffled = rest[:]
    random.Random(SPLIT_SEED).shuffle(shuffled)
    held = set(shuffled[:validation])
    extra: list[str] = []
    if extra_text and (root / "all_captions.txt").is_file():
        everything = read_caption_table(root / "all_captions.txt")
        extra = [c for name, caps in sorted(everything.items()) if name not in table and name not in test_names
                 for c in caps]
    splits = CaptionSplits(root, {n: table[n] for n in rest if n not in held}, {n: table[n] for n in sorted(held)},
                           {n: table[n] for n in sorted(test_names) if n in table}, extra, {})
    splits.info = {"train_data": str(root), "train_sha256": fingerprint(root / "captions.txt"),
                   "train_items": sum(map(len, splits.train.values())) + len(extra),
                   "train_split": f"{len(splits.train)} photos, {sum(map(len, splits.train.values()))} captions"
                                  + (f" + {len(extra)} captions of other Flickr8k photos as text" if extra else ""),
                   "eval_split": f"test.txt: {len(splits.test)} photos x 5 captions; validation: {len(held)} photos "
                                 f"of the training folder (seed {SPLIT_SEED})"}
    return splits
