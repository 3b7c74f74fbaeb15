"""Training and evaluation data, one module per kind (images, attributes, speech; the next families
add theirs beside them), the dataset catalogue that model cards quote, and the few helpers every
kind shares: refusing test splits, fingerprints for provenance, and the batch order of the training loop."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import VqtoolError
from ..hub import sha256_file


def refuse_test_split(path: str | Path) -> None:
    """Training data named like a test split (test.zip, cifar-test/, ...) is refused outright."""
    if "test" in re.split(r"[^a-z0-9]+", Path(path).stem.lower()):
        raise VqtoolError("refusing to train on what looks like a test split", str(path))


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a data file (or of a folder's sorted names and sizes) for provenance."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            digest.update(f"{p.relative_to(path)}:{p.stat().st_size}\n".encode())
    return digest.hexdigest()


def batches(n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
    """Endless index batches: a fresh permutation each epoch, each rank taking its own slice."""
    import torch

    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=generator)
        per_rank = n // world
        mine = order[rank * per_rank:(rank + 1) * per_rank]
        for start in range(0, per_rank - batch_size + 1, batch_size):
            yield mine[start:start + batch_size]
        epoch += 1
