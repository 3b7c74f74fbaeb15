"""Redraw docs/photo-sunset.png: a held-out sunset photo (smooth sky, the case where the 32x32 model
posterised skies into blotches) coded by the `photos` model with `--compress` at two quality levels,
beside Pillow's JPEG and WebP files of the same size or just larger, with an enlarged patch of sky.

    python docs/make_photo_figures.py [--model photos] [--photo 1312227131_771b5ed201.jpg]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "flickr8k-1k"
OUT = ROOT / "docs" / "photo-sunset.png"


def smallest_at_least(photo: np.ndarray, size: int, fmt: str) -> tuple[np.ndarray, int]:
    """Pillow's `fmt` at the lowest quality whose file is at least `size` bytes (else quality 95)."""
    for quality in range(1, 96):
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, fmt, quality=quality)
        if buffer.tell() >= size:
            break
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")), buffer.tell()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    from vqtool.evaluation import mse_per_image, psnr_db

    return psnr_db(mse_per_image(a[None], b[None])[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="photos")
    parser.add_argument("--photo", default="1312227131_771b5ed201.jpg")  # in flickr8k-1k/test.txt
    parser.add_argument("--qualities", default="2,8")
    args = parser.parse_args()
    import vqtool
    from vqtool.families.image.photo_eval import photo_file_bytes

    assert args.photo in (DATA / "test.txt").read_text().split(), "pick a held-out photo"
    net = vqtool.load(args.model, "cpu")
    photo = np.asarray(Image.open(DATA / "images" / args.photo).convert("RGB"))
    codes = net.encode(photo).cpu()[0]
    rows = []
    for quality in map(int, args.qualities.split(",")):
        ours = net.to_uint8(net.decode(codes[:quality][None], photo.shape[:2]))[0]
        size = photo_file_bytes(net, codes[:quality].numpy(), photo.shape)
        jpeg, jpeg_size = smallest_at_least(photo, size, "JPEG")
        webp, webp_size = smallest_at_least(photo, size, "WEBP")
        rows.append([(photo, "original"), (ours, f"vqtool --quality {quality}: {size:,} B, {psnr(photo, ours):.1f} dB"),
                     (jpeg, f"JPEG: {jpeg_size:,} B, {psnr(photo, jpeg):.1f} dB"),
                     (webp, f"WebP: {webp_size:,} B, {psnr(photo, webp):.1f} dB")])
    height, width = photo.shape[:2]
    patch = (slice(height // 8, height // 8 + 64), slice(width // 2 - 64, width // 2 + 64))  # sky near the sun
    cell_w, zoom = width, 2
    sheet = Image.new("RGB", (4 * cell_w, len(rows) * (height + 64 * zoom + 20)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = r * (height + 64 * zoom + 20)
        for c, (image, label) in enumerate(row):
            sheet.paste(Image.fromarray(image), (c * cell_w, top))
            crop = Image.fromarray(np.ascontiguousarray(image[patch])).resize((128 * zoom, 64 * zoom), Image.NEAREST)
            sheet.paste(crop, (c * cell_w, top + height))
            draw.rectangle([c * cell_w, top + height + 64 * zoom, (c + 1) * cell_w, top + height + 64 * zoom + 19],
                           fill="white")
            draw.text((c * cell_w + 3, top + height + 64 * zoom + 4), label, fill="black")
    sheet.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
