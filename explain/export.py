"""A picture to hand out on its own: one result at full size between a title strip (the method,
the class explained, what the colours mean, the model) and a colour bar with its end labels, so a
PNG taken out of the ZIP still says what it shows.

    png = export.labelled(picture, title="Grad-CAM", explained="sports car rather than convertible",
                          caption="Red: the parts of the photo that ...", model="EfficientNet-Lite0",
                          colormap="jet")

Pure pixels (NumPy, Pillow): no Dash, no model. Text uses Pillow's bundled font, so nothing is
fetched and it renders the same offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explain.render import colorize, colorize_signed

#: A picture narrower than this is centred on a canvas this wide, so the text stays readable
#: (the picture itself is never scaled).
MIN_WIDTH = 480
BACKGROUND = (255, 255, 255)
INK = (33, 37, 41)         # Bootstrap's body colour
MUTED = (108, 117, 125)    # Bootstrap's secondary text


@dataclass(frozen=True)
class Layout:
    """Where things went (pixels), for tests and callers that crop: the picture's box and the
    colour bar's box, each (left, top, right, bottom)."""

    picture: tuple[int, int, int, int]
    bar: tuple[int, int, int, int]
    size: tuple[int, int]   # (width, height) of the whole canvas


def labelled(picture: np.ndarray, *, title: str, explained: str = "", caption: str = "", model: str = "",
             colormap: str = "jet", signed: bool = False) -> np.ndarray:
    """`picture` (uint8 RGB, kept at full size) with the title strip above it and the colour bar
    below; returns the uint8 RGB canvas (see `layout` for where the parts are)."""
    return compose(picture, title=title, explained=explained, caption=caption, model=model,
                   colormap=colormap, signed=signed)[0]


def compose(picture: np.ndarray, *, title: str, explained: str = "", caption: str = "", model: str = "",
            colormap: str = "jet", signed: bool = False) -> tuple[np.ndarray, Layout]:
    """`labelled`, plus the Layout of the result."""
    picture = np.ascontiguousarray(picture, np.uint8)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    h, w = picture.shape[:2]
    width = max(w, MIN_WIDTH)
    unit = max(12, round(width / 55))       # body text size, px: ~55 characters per line
    pad = unit
    title_font, body_font = _font(round(unit * 1.5)), _font(unit)
    text_width = width - 2 * pad

    lines: list[tuple[str, ImageFont.FreeTypeFont, tuple[int, int, int]]] = []
    lines += [(t, title_font, INK) for t in _wrap(title, title_font, text_width)]
    if explained:
        lines += [(t, body_font, INK) for t in _wrap(f"Class explained: {explained}", body_font, text_width)]
    if caption:
        lines += [(t, body_font, INK) for t in _wrap(caption, body_font, text_width)]
    if model:
        lines += [(t, body_font, MUTED) for t in _wrap(f"Model: {model}", body_font, text_width)]
    spacing = max(2, unit // 3)
    heights = [_line_height(font) for _, font, _ in lines]
    top = pad + sum(heights) + spacing * max(0, len(lines) - 1) + pad

    bar_height = max(10, unit)
    label_height = _line_height(body_font)
    bottom = pad + bar_height + spacing + label_height + pad

    canvas = Image.new("RGB", (width, top + h + bottom), BACKGROUND)
    left = (width - w) // 2
    canvas.paste(Image.fromarray(picture), (left, top))
    draw = ImageDraw.Draw(canvas)
    y = pad
    for (text, font, colour), height in zip(lines, heights):
        draw.text((pad, y), text, font=font, fill=colour)
        y += height + spacing

    bar_top = top + h + pad
    bar_box = (pad, bar_top, width - pad, bar_top + bar_height)
    canvas.paste(Image.fromarray(colour_bar(bar_box[2] - bar_box[0], bar_height, colormap, signed)),
                 bar_box[:2])
    ends = ("-1: against", "+1: for") if signed else ("0: none", "1: strongest")
    label_y = bar_box[3] + spacing
    draw.text((pad, label_y), ends[0], font=body_font, fill=MUTED)
    draw.text((width - pad - _text_width(ends[1], body_font), label_y), ends[1], font=body_font, fill=MUTED)
    if signed:
        draw.text(((width - _text_width("0", body_font)) // 2, label_y), "0", font=body_font, fill=MUTED)
    layout = Layout(picture=(left, top, left + w, top + h), bar=bar_box, size=canvas.size)
    return np.asarray(canvas), layout


def colour_bar(width: int, height: int, colormap: str = "jet", signed: bool = False) -> np.ndarray:
    """A horizontal colour scale, low (or -1) on the left, high (or +1) on the right."""
    ramp = np.linspace(-1.0 if signed else 0.0, 1.0, max(1, width), dtype=np.float32)[None].repeat(height, axis=0)
    return colorize_signed(ramp) if signed else colorize(ramp, colormap)


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _line_height(font) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _text_width(text: str, font) -> int:
    return round(font.getlength(text))


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap to `width` px (a word longer than a line gets a line of its own)."""
    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and _text_width(candidate, font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return [line for line in lines if line] or []
