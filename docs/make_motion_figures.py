"""Draw the motion pictures of the README from test windows (never chosen by how good the futures look:
fixed windows of the dense test set, the same seed for every model).

    python docs/make_motion_figures.py [--model motion-cmu] [--data ../shared/data/cmu-mocap]

writes docs/motion-futures.png (futures of one test window, the truth as the last row) and
docs/motion-futures.gif (ten futures side by side)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="motion-cmu")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cmu-mocap"))
    parser.add_argument("--window", type=int, default=100, help="Index into the dense test windows.")
    parser.add_argument("-n", type=int, default=10)
    args = parser.parse_args()
    import vqtool
    from vqtool.data.motion import test_sets
    from vqtool.families.motion.outputs import animation, picture

    model = vqtool.load(args.model, device="cpu")
    dense = test_sets(args.data)["dense"]
    window = torch.as_tensor(dense.windows([args.window]))
    observed, truth = window[0, :50].numpy(), window[0, 50:].numpy()
    futures = model.sample(window[:, :50], args.n, generator=torch.Generator().manual_seed(0))[0].numpy()
    picture(observed, futures[:5], truth).save(ROOT / "docs" / "motion-futures.png", optimize=True)
    (ROOT / "docs" / "motion-futures.gif").write_bytes(animation(observed, futures, model.config.fps))
    print(f"window {args.window} ({dense.actions[args.window]}): docs/motion-futures.png, docs/motion-futures.gif")


if __name__ == "__main__":
    main()
