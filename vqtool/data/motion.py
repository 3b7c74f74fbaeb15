"""Human motion clips in the exponential-map text format of the LTD/DMGNN CMU mocap data: one frame per
line, 117 comma-separated values (root position, then 38 joints x 3 exponential-map values, the root's
rotation first). The short-term protocol of LTD (Mao et al., 2019; `utils/data_utils.py` of
wei-mao-2019/LearnTrajDep, read, not copied): every second frame (25 frames/s), 50 observed and 25
predicted frames, 8 test windows per test file from a fixed seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VqtoolError

FRAME_VALUES = 117  # 3 root position + 38 joints x 3
STRIDE = 2  # files are 50 frames/s; the protocol predicts at 25 frames/s
OBSERVED, PREDICTED = 50, 25
LTD_SEED, LTD_WINDOWS = 1234567890, 8
DENSE_STEP = 10  # the denser test set: a window starting every 10th frame (0.4 s) of each test file
MAX_FRAMES = 1_000_000  # a longer clip is refused rather than read into memory
MOTION_SUFFIXES = {".txt", ".csv", ".npy"}
VALIDATION_PER_ACTION = 100


def parse_motion(data: bytes, source: str, suffix: str = ".txt") -> np.ndarray:
    """A clip as a float32 array [frames, 117]; anything else is one clear error naming `source`."""
    if suffix == ".npy" or data[:6] == b"\x93NUMPY":
        from ..media import parse_npy

        array = parse_npy(data, source)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise VqtoolError(f"a .npy clip must be a 2-D numeric array [frames, {FRAME_VALUES}], "
                              f"not {array.dtype} {list(array.shape)}", source)
        array = array.astype(np.float32)
    else:
        array = _parse_text(data, source)
    if array.shape[0] == 0:
        raise VqtoolError("empty file: no frames", source)
    if array.shape[1] != FRAME_VALUES:
        raise VqtoolError(f"{array.shape[1]} values per frame; the CMU exponential-map format has {FRAME_VALUES}",
                          source)
    if array.shape[0] > MAX_FRAMES:
        raise VqtoolError(f"{array.shape[0]} frames is more than the {MAX_FRAMES} allowed", source)
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise VqtoolError(f"frame {row + 1}, value {col + 1} is {array[row, col]} (NaN or infinity)", source)
    return array


def _parse_text(data: bytes, source: str) -> np.ndarray:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise VqtoolError("not a text file (expected comma-separated numbers, one frame per line)", source) from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        values = line.split(",")
        if rows and len(values) != len(rows[0]):
            raise VqtoolError(f"line {number} has {len(values)} values, the first frame {len(rows[0])}", source)
        try:
            rows.append([float(v) for v in values])
        except ValueError:
            raise VqtoolError(f"line {number} holds something that is not a number", source) from None
        if len(rows) > MAX_FRAMES:
            raise VqtoolError(f"more than {MAX_FRAMES} frames", source)
    if not rows:
        raise VqtoolError("empty file: no frames", source)
    return np.asarray(rows, dtype=np.float32)


def read_motion(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VqtoolError(f"cannot read ({exc.strerror or exc})", str(path)) from None
    return parse_motion(data, str(path), path.suffix.lower())


def list_files(root: str | Path, split: str) -> dict[str, list[Path]]:
    """{action: [files in numeric order]} of `root/split/ACTION/ACTION_N.txt`."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise VqtoolError(f"no '{split}' folder (expected {split}/ACTION/ACTION_N.txt)", str(root))
    found = {}
    for action in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(action.glob("*.txt"), key=_file_number)
        if files:
            found[action.name] = files
    if not found:
        raise VqtoolError(f"no clips under {split}/", str(root))
    return found


def _file_number(path: Path) -> int:
    """ACTION_N.txt -> N (0 for other names), so that ACTION_10 sorts after ACTION_9."""
    number = path.stem.rsplit("_", 1)[-1]
    return int(number) if number.isdigit() else 0


def ltd_windows(frames: int, length: int = OBSERVED + PREDICTED) -> list[int]:
    """Start frames of LTD's 8 test windows of one (downsampled) file: a fresh RandomState(1234567890)
    per file, `randint(0, frames - 75)` eight times (as `load_data_cmu` with is_test)."""
    rng = np.random.RandomState(LTD_SEED)
    return [int(rng.randint(0, frames - length)) for _ in range(LTD_WINDOWS)]


def dense_windows(frames: int, length: int = OBSERVED + PREDICTED, step: int = DENSE_STEP) -> list[int]:
    return list(range(0, frames - length + 1, step))


@dataclass
class MotionSet:
    """Windows of [length, 117] frames cut from downsampled clips (kept whole: windows index into them)."""

    clips: list[np.ndarray]
    starts: list[tuple[int, int]]  # (clip index, start frame)
    length: int = OBSERVED + PREDICTED
    actions: list[str] = field(default_factory=list)  # one per window

    def __len__(self) -> int:
        return len(self.starts)

    def by_action(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for index, action in enumerate(self.actions):
            found.setdefault(action, []).append(index)
        return found

    def capped(self, most: int) -> "MotionSet":
        """At most `most` windows of each action, evenly spaced."""
        keep = sorted(i for indices in self.by_action().values()
                      for i in (indices if len(indices) <= most else
                                [indices[int(k)] for k in np.linspace(0, len(indices) - 1, most).round()]))
        return MotionSet(self.clips, [self.starts[i] for i in keep], self.length, [self.actions[i] for i in keep])

    def windows(self, indices=None) -> np.ndarray:
        chosen = self.starts if indices is None else [self.starts[int(i)] for i in indices]
        return np.stack([self.clips[c][s:s + self.length] for c, s in chosen]).astype(np.float32)


def motion_splits(root: str | Path, validation_share: float = 0.1, stride: int = STRIDE,
                  length: int = OBSERVED + PREDICTED):
    """Training windows (every start frame, as LTD) and validation windows (every 2nd start) that never
    share a frame. Validation is a new recording where possible, as the test files are: the
    highest-numbered training file of each action that has at least 3, and for the others the last 10%
    of each file at least 4 windows long; at most 100 windows per action (evenly spaced), so that no
    action dominates it. Returns (train, validation, info)."""
    from . import fingerprint, refuse_test_split

    root = Path(root)
    refuse_test_split(root)
    files = list_files(root, "train")
    train, validation = MotionSet([], []), MotionSet([], [])
    counts, held = {}, []
    for action, paths in files.items():
        counts[action] = len(paths)
        for number, path in enumerate(paths):
            clip = read_motion(path)[::stride]
            if len(paths) >= 3:
                cut = 0 if number == len(paths) - 1 else len(clip)
            else:
                cut = len(clip) if len(clip) < 4 * length else int(math.floor(len(clip) * (1 - validation_share)))
            if cut < len(clip):
                held.append(path.name if cut == 0 else f"{path.name} (last {len(clip) - cut} frames)")
            for part, target, step in ((clip[:cut], train, 1), (clip[cut:], validation, 2)):
                if len(part) < length:
                    continue
                target.clips.append(part)
                starts = range(0, len(part) - length + 1, step)
                target.starts += [(len(target.clips) - 1, s) for s in starts]
                target.actions += [action] * len(starts)
    validation = validation.capped(VALIDATION_PER_ACTION)
    info = {"train_data": str(root), "train_split": "train/ less the validation files",
            "train_items": len(train), "train_sha256": fingerprint(root / "train"), "train_files": counts,
            "validation_items": len(validation), "validation_files": held, "frame_stride": stride}
    return train, validation, info


def test_sets(root: str | Path, stride: int = STRIDE) -> dict[str, MotionSet]:
    """The two test sets of the card: LTD's 8 windows per test file, and a window every 10th frame
    ({} without a test/ folder: a model trained on other data then has no held-out numbers)."""
    sets = {"ltd": MotionSet([], []), "dense": MotionSet([], [])}
    if not (Path(root) / "test").is_dir():
        return {}
    for action, paths in list_files(root, "test").items():
        for path in paths:
            clip = read_motion(path)[::stride]
            for name, starts in (("ltd", ltd_windows(len(clip))), ("dense", dense_windows(len(clip)))):
                sets[name].clips.append(clip)
                sets[name].starts += [(len(sets[name].clips) - 1, s) for s in starts]
                sets[name].actions += [action] * len(starts)
    return sets


def channel_stats(train: MotionSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and the modelled channels: those after the root's position and rotation (0-5, which
    LTD's evaluation zeroes) whose std over the training frames is at least 1e-4 (LTD's rule)."""
    frames = np.concatenate(train.clips)
    mean, std = frames.mean(0), frames.std(0)
    used = np.array([d for d in range(6, FRAME_VALUES) if std[d] >= 1e-4])
    return mean.astype(np.float32), np.maximum(std, 1e-4).astype(np.float32), used
