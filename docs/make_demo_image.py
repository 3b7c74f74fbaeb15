"""Draws docs/demo.png, the demo's input: a small landscape made by code, so the project owns it (CC0)."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

width, height = 128, 96
y = np.linspace(0, 1, height)[:, None, None]
sky = (np.array([70, 130, 220]) * (1 - y) + np.array([250, 200, 150]) * y).astype(np.uint8)
image = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).copy())
draw = ImageDraw.Draw(image)
draw.ellipse((90, 10, 114, 34), fill=(255, 225, 90))
draw.polygon([(0, 70), (30, 45), (60, 68), (95, 40), (128, 66), (128, 96), (0, 96)], fill=(60, 120, 60))
draw.rectangle((30, 62, 58, 84), fill=(190, 80, 60))
draw.polygon([(27, 63), (44, 48), (61, 63)], fill=(110, 50, 40))
draw.rectangle((40, 72, 47, 84), fill=(70, 45, 30))
for x in range(5, 128, 9):
    draw.line((x, 96, x + 3, 86), fill=(40, 90, 40))
image.save(Path(__file__).with_name("demo.png"))
