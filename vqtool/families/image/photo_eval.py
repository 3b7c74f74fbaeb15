"""Rate and distortion of the photo model on held-out photographs at full size, per quality level,
against what a user would pick instead (Pillow's JPEG and WebP at the same PSNR)."""

from __future__ import annotations

import numpy as np
import torch

from vqtool.evaluation import mse_per_image, psnr_db

MS_SSIM_MIN_SIDE = 161  # pytorch-msssim's five scales with an 11-pixel window need more than 160 pixels


def ms_ssim(original: np.ndarray, restored: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images (pytorch-msssim, the `eval` extra); None when the image is
    too small for five scales, or the package is missing."""
    try:
        from pytorch_msssim import ms_ssim as measure
    except ImportError:
        return None
    if min(original.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    # torch.tensor copies: Pillow's arrays are read-only, which torch.from_numpy warns about
    pair = [torch.tensor(a).permute(2, 0, 1)[None].double() for a in (original, restored)]
    return float(measure(*pair, data_range=255.0))


def photo_file_bytes(model, codes: np.ndarray, shape: tuple, compress: bool = True) -> int:
    """Bytes of the `.vqc` record `vqtool encode --compress --quality q` writes (header included)."""
    from .codec import image_record
    from .context_int import compress_codes

    record = image_record(codes, shape, getattr(model, "name", "photos"), getattr(model, "sha256", "0" * 64),
                          model.config.num_codes)
    return len(record.to_bytes(compress_codes(model, codes) if compress else None))


def evaluate_photos(model, photos: list[np.ndarray], baselines: bool = True) -> dict:
    """Per quality level: mean bits per pixel of the range-coded files, PSNR (of the mean MSE and mean of
    per-photo), MS-SSIM, and the sizes of JPEG and WebP files of each photo at that photo's PSNR."""
    from .task import pillow_at_psnr

    stages = model.config.stages
    rows = {q: {"bits": [], "mse": [], "ms_ssim": [], "jpeg": [], "webp": [], "packed": []} for q in range(1, stages + 1)}
    pixels = []
    for photo in photos:
        codes = model.encode(photo).cpu()[0]
        pixels.append(photo.shape[0] * photo.shape[1])
        for q in range(1, stages + 1):
            row = rows[q]
            restored = model.to_uint8(model.decode(codes[:q][None], photo.shape[:2]))[0]
            mse = float(mse_per_image(photo[None], restored[None])[0])
            row["mse"].append(mse)
            row["bits"].append(photo_file_bytes(model, codes[:q].numpy(), photo.shape) * 8)
            row["packed"].append(photo_file_bytes(model, codes[:q].numpy(), photo.shape, compress=False) * 8)
            score = ms_ssim(photo, restored)
            if score is not None:
                row["ms_ssim"].append(score)
            if baselines:
                target = psnr_db(mse)
                row["jpeg"].append(pillow_at_psnr(photo, target, "JPEG")[0] * 8)
                row["webp"].append(pillow_at_psnr(photo, target, "WEBP")[0] * 8)
    pixels = np.array(pixels, dtype=np.float64)
    levels = []
    for q, row in rows.items():
        bpp = np.array(row["bits"]) / pixels
        level = {"quality": q, "bpp": round(float(bpp.mean()), 4),
                 "packed_bpp": round(float((np.array(row["packed"]) / pixels).mean()), 4),
                 "psnr_db": round(psnr_db(np.mean(row["mse"])), 3),
                 "psnr_per_image_db": round(float(np.mean([psnr_db(m) for m in row["mse"]])), 3),
                 "ms_ssim": round(float(np.mean(row["ms_ssim"])), 4) if row["ms_ssim"] else None}
        if baselines:
            jpeg, webp = np.array(row["jpeg"]) / pixels, np.array(row["webp"]) / pixels
            level.update({"jpeg_bpp_at_psnr": round(float(jpeg.mean()), 4),
                          "webp_bpp_at_psnr": round(float(webp.mean()), 4),
                          "size_vs_jpeg": round(float(np.mean(bpp / jpeg)), 4),
                          "size_vs_webp": round(float(np.mean(bpp / webp)), 4),
                          "smaller_than_jpeg": round(float(np.mean(bpp < jpeg)), 4)})
        levels.append(level)
    return {"photo_levels": levels, "eval_photos": len(photos),
            "ms_ssim_photos": len(rows[1]["ms_ssim"]), "eval_pixels": int(pixels.sum())}
