"""Writing predicted futures: numbers (.txt, .npy), pictures (.png, .gif) and skeletons (.bvh).

Layouts (docs/motion.md): `.npy` is float32 [futures, frames, 117]; `.txt` is the data's own format,
one frame per line, the futures one after another (future i's frame t on line i * frames + t + 1), so a
single future is a clip that `predict-motion` reads back; `.bvh` holds the 50 observed frames then the
future, one file per future (`out.bvh`, or `out_1.bvh` ... `out_N.bvh` for several)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vqtool.errors import VqtoolError
from vqtool.media import write_bytes

from .skeleton import BONES, NAMES, forward_kinematics, to_bvh

FORMATS = (".txt", ".npy", ".png", ".gif", ".bvh")
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
OBSERVED_COLOUR, TRUTH_COLOUR = (90, 90, 90), (0, 0, 0)
CELL_W, CELL_H, MM_PER_PX = 110, 180, 12.5
GIF_PANELS = 10  # an animation shows at most this many futures side by side


def format_for(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise VqtoolError(f"unknown output format '{suffix}' (use {', '.join(FORMATS)})", path)
    return suffix


def text_lines(frames: np.ndarray) -> bytes:
    buffer = io.StringIO()
    np.savetxt(buffer, frames.reshape(-1, frames.shape[-1]), fmt="%.7g", delimiter=",")
    return buffer.getvalue().encode()


def write_futures(target: str, suffix: str, observed: np.ndarray, futures: np.ndarray, fps: float,
                  truth=None) -> str | list[str]:
    """Encode everything first, then write (each file atomically): a failure leaves no partial output.
    `suffix` is the format (".txt", ...); `target` a path or "-"."""
    if suffix == ".bvh":
        texts = [to_bvh(np.concatenate([observed, future]), 1 / fps).encode() for future in futures]
        paths = [target] if len(texts) == 1 else [str(Path(target).with_name(f"{Path(target).stem}_{i + 1}.bvh"))
                                                  for i in range(len(texts))]  # several never go to "-"
        for path, text in zip(paths, texts):
            write_bytes(path, text)
        return paths[0] if len(paths) == 1 else paths
    if suffix == ".txt":
        data = text_lines(futures)
    elif suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, futures.astype(np.float32), allow_pickle=False)
        data = buffer.getvalue()
    elif suffix == ".png":
        buffer = io.BytesIO()
        picture(observed, futures, truth).save(buffer, "PNG", optimize=True)
        data = buffer.getvalue()
    else:
        data = animation(observed, futures, fps)
    write_bytes(target, data)
    return target


# ---- pictures ----

def _view(joints_mm: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Joints [..., 38, 3] -> image coordinates [..., 38, 2] in px: a three-quarter view of the body as it
    faces in `reference` (one pose), each pose centred on its own hips (so a walker stays in its cell)."""
    hips = (NAMES.index("lfemur"), NAMES.index("rfemur"))
    lateral = reference[hips[0]] - reference[hips[1]]
    angle = np.arctan2(lateral[2], lateral[0]) - np.radians(30)
    c, s = np.cos(angle), np.sin(angle)
    x = joints_mm[..., 0] * c + joints_mm[..., 2] * s
    y = joints_mm[..., 1]
    x = x - x[..., :1]
    return np.stack([x / MM_PER_PX, -y / MM_PER_PX], -1)


def _draw(draw: ImageDraw.ImageDraw, points: np.ndarray, left: int, top: int, floor_mm: float, colour) -> None:
    ox, oy = left + CELL_W / 2, top + CELL_H - 12 + floor_mm / MM_PER_PX
    for joint, parent in BONES:
        (x0, y0), (x1, y1) = points[joint], points[parent]
        draw.line([(ox + x0, oy + y0), (ox + x1, oy + y1)], fill=colour, width=3)
    hx, hy = points[NAMES.index("head")]
    draw.ellipse([ox + hx - 6, oy + hy - 12, ox + hx + 6, oy + hy], outline=colour, width=2)


def _joints(observed: np.ndarray, futures: np.ndarray, truth=None):
    rows = [observed[None], futures] + ([truth[None]] if truth is not None else [])
    joints = [forward_kinematics(torch.as_tensor(r)).numpy() for r in rows]
    reference = joints[0][0, -1]
    floor = min(j[..., 1].min() for j in joints)
    return [_view(j, reference) for j in joints], floor


def picture(observed: np.ndarray, futures: np.ndarray, truth=None, shown: int = 5) -> Image.Image:
    """One row per future: the observed frames (grey, every 10th) then the future (colour, every 5th);
    `truth`, when known (test data), is a last row in black."""
    views, floor = _joints(observed, futures, truth)
    obs_idx = np.linspace(0, len(observed) - 1, shown).round().astype(int)
    fut_idx = np.linspace(len(futures[0]) / shown - 1, len(futures[0]) - 1, shown).round().astype(int)
    rows = len(futures) + (truth is not None)
    image = Image.new("RGB", (CELL_W * (2 * shown + 1), CELL_H * rows), "white")
    draw = ImageDraw.Draw(image)
    for row in range(rows):
        is_truth = row == len(futures)
        future = views[2][0] if is_truth else views[1][row]
        colour = TRUTH_COLOUR if is_truth else PALETTE[row % len(PALETTE)]
        top = row * CELL_H
        draw.text((4, top + 4), "truth" if is_truth else f"future {row + 1}", fill=colour)
        for i, t in enumerate(obs_idx):
            _draw(draw, views[0][0, t], i * CELL_W, top, floor, OBSERVED_COLOUR)
        draw.line([(shown * CELL_W + CELL_W // 2, top + 10), (shown * CELL_W + CELL_W // 2, top + CELL_H - 10)],
                  fill=(200, 200, 200), width=1)
        for i, t in enumerate(fut_idx):
            _draw(draw, future[t], (shown + 1 + i) * CELL_W, top, floor, colour)
    return image


def animation(observed: np.ndarray, futures: np.ndarray, fps: float) -> bytes:
    """Futures side by side (at most GIF_PANELS), each playing the observed frames then its future."""
    futures = futures[:GIF_PANELS]
    views, floor = _joints(observed, futures)
    frames = []
    for t in range(len(observed) + futures.shape[1]):
        image = Image.new("RGB", (CELL_W * len(futures), CELL_H), "white")
        draw = ImageDraw.Draw(image)
        for panel in range(len(futures)):
            past = t < len(observed)
            pose = views[0][0, t] if past else views[1][panel, t - len(observed)]
            colour = OBSERVED_COLOUR if past else PALETTE[panel % len(PALETTE)]
            _draw(draw, pose, panel * CELL_W, 0, floor, colour)
            draw.text((panel * CELL_W + 4, 4), "observed" if past else f"future {panel + 1}", fill=colour)
        frames.append(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=32))
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)), loop=0,
                   optimize=False)
    return buffer.getvalue()


def futures_summary(observed: np.ndarray, futures: np.ndarray, fps: float) -> dict:
    """What `--json` tells about each future: how fast its joints move and how far it ends from the clip's
    last pose and from the other futures (millimetres; joints relative to the hips)."""
    joints = forward_kinematics(torch.as_tensor(futures), with_root=False).numpy()
    last = forward_kinematics(torch.as_tensor(observed[-1:]), with_root=False).numpy()[0]
    speed = np.linalg.norm(np.diff(np.concatenate([np.broadcast_to(last, joints[:, :1].shape), joints], 1), axis=1),
                           axis=-1).mean((1, 2)) * fps
    final_change = np.linalg.norm(joints[:, -1] - last, axis=-1).mean(-1)
    flat = torch.as_tensor(joints.reshape(len(joints), -1), dtype=torch.float64)
    pairs = torch.cdist(flat, flat).numpy()  # [N, N]: 1,000 futures stay 8 MB, not N x N x 2,850 floats
    apart = pairs.sum(1) / max(1, len(joints) - 1)
    return {"futures": len(futures), "frames": int(futures.shape[1]), "fps": fps,
            "apd_mm": round(float(pairs.sum() / max(1, len(joints) * (len(joints) - 1))), 2),
            "samples": [{"future": i + 1, "mean_joint_speed_mm_s": round(float(speed[i]), 1),
                         "final_pose_change_mm": round(float(final_change[i]), 1),
                         "mean_distance_to_others_mm": round(float(apart[i]), 1)} for i in range(len(futures))]}
