"""The contact sheet of `vqtool caption -o sheet.png`: each photo with its captions under it."""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL = 256  # photo width in the sheet (aspect kept, height capped at PANEL)
COLUMNS = 4
LINE = 15  # pixels per line of text
WRAP = 40  # characters per line


def _font():
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType's scalable default font
        return ImageFont.load_default()


def thumbnail(image: Image.Image) -> Image.Image:
    """The photo as the sheet shows it: RGB, at most PANEL pixels a side."""
    thumb = image.convert("RGB")
    thumb.thumbnail((PANEL, PANEL), Image.LANCZOS)
    return thumb


def panel(image: Image.Image, captions: list[str], text_lines: int) -> Image.Image:
    thumb = thumbnail(image)
    out = Image.new("RGB", (PANEL, PANEL + 6 + text_lines * LINE), "white")
    out.paste(thumb, ((PANEL - thumb.width) // 2, (PANEL - thumb.height) // 2))
    draw, font, y = ImageDraw.Draw(out), _font(), PANEL + 4
    for number, caption in enumerate(captions, 1):
        for i, line in enumerate(textwrap.wrap(caption or "(empty)", WRAP) or [""]):
            draw.text((4, y), (f"{number}. " if i == 0 else "   ") + line, fill=(20, 20, 20), font=font)
            y += LINE
    return out


def contact_sheet(images: list[Image.Image], captions: list[list[str]], columns: int = COLUMNS) -> np.ndarray:
    """An RGB array: panels in rows of `columns`, all as tall as the one with the most text."""
    from vqtool.media import tile

    lines = max(sum(max(1, len(textwrap.wrap(c or "(empty)", WRAP))) for c in caps) for caps in captions)
    panels = [np.asarray(panel(image, caps, lines)) for image, caps in zip(images, captions)]
    return tile(panels, min(columns, len(panels)), gutter=6)
