"""The CMU skeleton of the LTD/DMGNN data: rotations, forward kinematics, Euler angles and BVH.

Conventions are those of the data (and of LTD's `forward_kinematics.py`, which evaluation must match):
row vectors, a joint's world rotation W_i = L_i @ W_parent with L_i = Rodrigues(its exponential map),
its position p_i = offset_i @ W_parent + p_parent; bone offsets are the CMU lengths x 70 (millimetres,
as LTD reports), and the root position of the files is in the same units before that scaling."""

from __future__ import annotations

import numpy as np
import torch

from vqtool.errors import VqtoolError

UNIT_MM = 70.0  # file units -> millimetres (LTD scales the CMU offsets by 70)
PARENTS = [-1, 0, 1, 2, 3, 4, 5, 0, 7, 8, 9, 10, 11, 0, 13, 14, 15, 16, 17, 18, 15, 20, 21, 22, 23, 24, 25, 23,
           27, 15, 29, 30, 31, 32, 33, 34, 32, 36]
NAMES = ["hips", "lhipjoint", "lfemur", "ltibia", "lfoot", "ltoes", "ltoes_end",
         "rhipjoint", "rfemur", "rtibia", "rfoot", "rtoes", "rtoes_end",
         "spine", "lowerback", "upperback", "thorax", "lowerneck", "upperneck", "head",
         "lclavicle_root", "lclavicle", "lhumerus", "lradius", "lwrist", "lhand", "lfingers", "lthumb_root",
         "lthumb", "rclavicle_root", "rclavicle", "rhumerus", "rradius", "rwrist", "rhand", "rfingers",
         "rthumb_root", "rthumb"]
# CMU bone vectors (in the asf's units) of the 38 joints, in the data's joint order
_OFFSETS = [
    (0, 0, 0), (0, 0, 0), (1.65674, -1.80282, 0.62477), (2.5972, -7.13576, 0), (2.49236, -6.8477, 0),
    (0.19704, -0.54136, 2.14581), (0, 0, 1.11249), (0, 0, 0), (-1.6107, -1.80282, 0.62476),
    (-2.59502, -7.12977, 0), (-2.4678, -6.78024, 0), (-0.23024, -0.63258, 2.13368), (0, 0, 1.11569),
    (0, 0, 0), (0.01961, 2.0545, -0.14112), (0.01021, 2.06436, -0.05921), (0, 0, 0),
    (0.00713, 1.56711, 0.14968), (0.03429, 1.56041, -0.10006), (0.01305, 1.6256, -0.05265), (0, 0, 0),
    (3.54205, 0.90436, -0.17364), (4.86513, 0, 0), (3.35554, 0, 0), (0, 0, 0), (0.66117, 0, 0),
    (0.53306, 0, 0), (0, 0, 0), (0.5412, 0, 0.5412), (0, 0, 0), (-3.49802, 0.75994, -0.32616),
    (-5.02649, 0, 0), (-3.36431, 0, 0), (0, 0, 0), (-0.73041, 0, 0), (-0.58887, 0, 0), (0, 0, 0),
    (-0.59786, 0, 0.59786)]
OFFSETS_MM = np.array(_OFFSETS, dtype=np.float64) * UNIT_MM
JOINTS = len(PARENTS)
BONES = [(i, p) for i, p in enumerate(PARENTS) if p >= 0 and np.abs(OFFSETS_MM[i]).sum() > 0]


def expmap_to_rotmat(r: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, [..., 3] -> [..., 3, 3] (the data's convention, as LTD's expmap2rotmat)."""
    theta = r.norm(dim=-1, keepdim=True)
    axis = r / (theta + 1e-7)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*r.shape[:-1], 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def rotmat_to_euler(m: torch.Tensor) -> torch.Tensor:
    """LTD's rotmat2euler, [..., 3, 3] -> [..., 3] (x, y, z), including its gimbal-lock branch."""
    r02 = m[..., 0, 2].clamp(-1, 1)
    e2 = -torch.asin(r02)
    cos = torch.cos(e2)
    e1 = torch.atan2(m[..., 1, 2] / cos, m[..., 2, 2] / cos)
    e3 = torch.atan2(m[..., 0, 1] / cos, m[..., 0, 0] / cos)
    locked = r02.abs() == 1
    if locked.any():
        delta = torch.atan2(m[..., 0, 1], m[..., 0, 2])
        e1 = torch.where(locked, delta, e1)
        e2 = torch.where(locked, torch.where(r02 == -1, torch.full_like(e2, np.pi / 2),
                                             torch.full_like(e2, -np.pi / 2)), e2)
        e3 = torch.where(locked, torch.zeros_like(e3), e3)
    return torch.stack([e1, e2, e3], -1)


def euler_angles(frames: torch.Tensor) -> torch.Tensor:
    """The Euler error's view of frames [..., 117]: the root's position and rotation zeroed (as LTD's test),
    each of the 39 triples through Rodrigues then rotmat2euler -> [..., 117]."""
    frames = frames.clone()
    frames[..., :6] = 0
    triples = frames.reshape(*frames.shape[:-1], -1, 3)
    return rotmat_to_euler(expmap_to_rotmat(triples)).reshape(frames.shape)


def forward_kinematics(frames: torch.Tensor, with_root: bool = True) -> torch.Tensor:
    """Joint positions in millimetres, [..., 117] -> [..., 38, 3]. `with_root=False` zeroes the root's
    position and rotation first (LTD's 3-D error does)."""
    frames = frames.double()
    if not with_root:
        frames = frames.clone()
        frames[..., :6] = 0
    local = expmap_to_rotmat(frames[..., 3:].reshape(*frames.shape[:-1], JOINTS, 3))
    offsets = torch.as_tensor(OFFSETS_MM, device=frames.device)
    world, positions = [local[..., 0, :, :]], [offsets[0] + frames[..., :3] * UNIT_MM]
    for joint in range(1, JOINTS):
        parent = PARENTS[joint]
        positions.append(offsets[joint] @ world[parent] + positions[parent])
        world.append(local[..., joint, :, :] @ world[parent])
    return torch.stack(positions, -2).float()


# ---- BVH: the same skeleton and motion for Blender and mocap viewers ----

def _children(joint: int) -> list[int]:
    return [i for i, p in enumerate(PARENTS) if p == joint]


def _zxy_degrees(m: np.ndarray) -> np.ndarray:
    """Angles (z, x, y) with m = Rz @ Rx @ Ry (column vectors), in degrees; [..., 3, 3] -> [..., 3]."""
    x = np.arcsin(np.clip(m[..., 2, 1], -1, 1))
    y = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
    z = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
    return np.degrees(np.stack([z, x, y], -1))


def to_bvh(frames: np.ndarray, frame_time: float) -> str:
    """A BVH file of frames [T, 117]: every joint rotates (channels Z X Y); the root also moves.

    The column-vector rotation BVH wants of a joint is the transpose of the data's row-vector one."""
    local = expmap_to_rotmat(torch.as_tensor(frames[:, 3:], dtype=torch.float64).reshape(len(frames), JOINTS, 3))
    angles = _zxy_degrees(local.transpose(-1, -2).numpy())  # [T, 38, 3]
    lines, order = ["HIERARCHY"], []

    def emit(joint: int, depth: int) -> None:
        pad = "  " * depth
        o = OFFSETS_MM[joint]
        lines.append(f"{pad}{'ROOT' if joint == 0 else 'JOINT'} {NAMES[joint]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {o[0]:.5f} {o[1]:.5f} {o[2]:.5f}")
        lines.append(f"{pad}  CHANNELS " + ("6 Xposition Yposition Zposition " if joint == 0 else "3 ")
                     + "Zrotation Xrotation Yrotation")
        order.append(joint)
        kids = _children(joint)
        for child in kids:
            emit(child, depth + 1)
        if not kids:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0.00000 0.00000 0.00000", pad + "  }"])
        lines.append(pad + "}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {len(frames)}", f"Frame Time: {frame_time:.6f}"]
    root = frames[:, :3].astype(np.float64) * UNIT_MM
    for t in range(len(frames)):
        values = list(root[t]) + [v for joint in order for v in angles[t, joint]]
        lines.append(" ".join(f"{v:.5f}" for v in values))
    return "\n".join(lines) + "\n"


def _axis(name: str, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    rows = {"X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[name]
    return np.moveaxis(np.array(rows), [0, 1], [-2, -1])


def bvh_positions(text: str) -> np.ndarray:
    """Parse a BVH (any channel order) and return its joints' positions [T, joints, 3] by its own forward
    kinematics: a reader independent of `to_bvh`, for checking files."""
    tokens = text.split()
    joints, stack, i = [], [], 1 if tokens[:1] == ["HIERARCHY"] else 0  # joints: (parent, offset, channels)
    while tokens[i] != "MOTION":
        word = tokens[i]
        if word in ("ROOT", "JOINT"):
            joints.append([stack[-1] if stack else -1, None, []])
            pending, i = len(joints) - 1, i + 2
        elif word == "End":
            joints.append([stack[-1], None, []])
            pending, i = len(joints) - 1, i + 2
        elif word == "{":
            stack.append(pending)
            i += 1
        elif word == "}":
            stack.pop()
            i += 1
        elif word == "OFFSET":
            joints[stack[-1]][1] = np.array([float(v) for v in tokens[i + 1:i + 4]])
            i += 4
        elif word == "CHANNELS":
            count = int(tokens[i + 1])
            joints[stack[-1]][2] = tokens[i + 2:i + 2 + count]
            i += 2 + count
        else:
            raise VqtoolError(f"unexpected BVH token '{word}'")
    frames = int(tokens[i + 2])
    values = np.array([float(v) for v in tokens[i + 6:]]).reshape(frames, -1)
    positions = np.zeros((frames, len(joints), 3))
    rotations = np.zeros((frames, len(joints), 3, 3))
    column = 0
    for j, (parent, offset, channels) in enumerate(joints):
        rotation, position = np.broadcast_to(np.eye(3), (frames, 3, 3)).copy(), offset.copy()[None].repeat(frames, 0)
        for name in channels:
            data = values[:, column]
            column += 1
            if name.endswith("position"):
                position[:, "XYZ".index(name[0])] += data
            else:
                rotation = rotation @ _axis(name[0], np.radians(data))
        if parent < 0:
            positions[:, j], rotations[:, j] = position, rotation
        else:
            positions[:, j] = np.einsum("tij,tj->ti", rotations[:, parent], position) + positions[:, parent]
            rotations[:, j] = rotations[:, parent] @ rotation
    return positions
