"""Synthetic street scenes with a per-pixel vehicle mask: camlens' own ground truth.

Real photos cannot ship in the repo, and a heatmap can only be judged against an answer
key, so the bundled models train and are tested on scenes drawn here. Every scene is a pure
function of its seed (numpy `default_rng` + OpenCV drawing), and comes with the mask of the
vehicle pixels that stay visible after occlusion and the same scene drawn without its
vehicles (`backdrop`), which is how the tests prove the mask matches what was drawn.

Scenes are drawn at twice the requested size without anti-aliasing and shrunk with area
averaging: edges come out smooth and the mask is exact (a pixel is in the mask when any part
of it shows vehicle, so every pixel the vehicles changed is in the mask).

The backgrounds make the confound of the `vehicles-shortcut` model: `CONFOUND` ties each
class to one background (buses on snow, cars on grass, ...); `confounded=False` draws every
vehicle on a background other than its own, which is how the shortcut is caught out.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES: tuple[str, ...] = ("car", "pickup", "bus", "truck", "motorcycle")
BACKGROUNDS: tuple[str, ...] = ("grass", "snow", "desert", "road", "dirt")
CONFOUND: dict[str, str] = {
    "car": "grass", "pickup": "desert", "bus": "snow", "truck": "road", "motorcycle": "dirt",
}

_SS = 2  # supersampling factor

# Vehicle length as a fraction of the image width, before perspective and crowd shrinking.
_LENGTH = {"car": (0.4, 0.56), "pickup": (0.42, 0.58), "bus": (0.56, 0.8),
           "truck": (0.54, 0.76), "motorcycle": (0.27, 0.38)}

# Background palettes (RGB): sky top, sky at the horizon, ground, ground texture amplitude.
_PALETTE = {
    "grass": ((70, 130, 215), (165, 205, 240), (86, 150, 60), 16),
    "snow": ((165, 172, 185), (212, 217, 225), (236, 240, 246), 6),
    "desert": ((120, 165, 225), (232, 214, 182), (214, 184, 122), 10),
    "road": ((80, 140, 220), (180, 210, 235), (100, 102, 106), 8),
    "dirt": ((205, 120, 95), (245, 190, 140), (142, 82, 52), 14),
}


@dataclass(frozen=True)
class Scene:
    """One drawn scene. `mask` holds the visible vehicle pixels; `boxes` each vehicle's full
    extent (x0, y0, x1, y1), exclusive ends, occluded parts included; `backdrop` is the same
    scene with no vehicle drawn (occluders and noise identical)."""

    image: np.ndarray
    mask: np.ndarray
    label: int
    class_name: str
    background: str
    boxes: tuple[tuple[int, int, int, int], ...]
    seed: int
    backdrop: np.ndarray

    @property
    def n_vehicles(self) -> int:
        return len(self.boxes)

    @property
    def confounded(self) -> bool:
        """True when the background is the one the shortcut model learnt for this class."""
        return CONFOUND[self.class_name] == self.background


class _Layer:
    """An RGB canvas plus a coverage mask: every primitive paints both, so the mask is what
    was drawn and nothing else."""

    def __init__(self, h: int, w: int):
        self.rgb = np.zeros((h, w, 3), np.uint8)
        self.alpha = np.zeros((h, w), np.uint8)

    def _both(self, fn, *args, color, **kw):
        fn(self.rgb, *args, color=tuple(int(c) for c in color), **kw)
        fn(self.alpha, *args, color=255, **kw)

    def poly(self, pts, color):
        self._both(cv2.fillPoly, [np.round(np.asarray(pts)).astype(np.int32)], color=color)

    def circle(self, center, radius, color, thickness=-1):
        self._both(cv2.circle, _pt(center), max(1, round(radius)), color=color,
                   thickness=thickness)

    def ellipse(self, center, axes, color, angle=0.0):
        self._both(cv2.ellipse, _pt(center), (max(1, round(axes[0])), max(1, round(axes[1]))),
                   angle, 0, 360, color=color, thickness=-1)

    def rect(self, x0, y0, x1, y1, color):
        self._both(cv2.rectangle, _pt((x0, y0)), _pt((x1, y1)), color=color, thickness=-1)

    def line(self, p0, p1, color, thickness):
        self._both(cv2.line, _pt(p0), _pt(p1), color=color, thickness=max(1, round(thickness)))

    def flip(self):
        self.rgb = self.rgb[:, ::-1].copy()
        self.alpha = self.alpha[:, ::-1].copy()

    def paste_into(self, other: _Layer, x0: int, y0: int) -> None:
        """Copy the drawn pixels onto `other` with the top-left corner at (x0, y0), clipped."""
        h, w = self.alpha.shape
        H, W = other.alpha.shape
        ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
        if ax0 >= ax1 or ay0 >= ay1:
            return
        src = (slice(ay0 - y0, ay1 - y0), slice(ax0 - x0, ax1 - x0))
        dst = (slice(ay0, ay1), slice(ax0, ax1))
        on = self.alpha[src] > 0
        other.rgb[dst][on] = self.rgb[src][on]
        other.alpha[dst][on] = 255


def _pt(p) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def _shade(color, factor: float):
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)


def _body_color(rng: np.random.Generator):
    if rng.random() < 0.25:  # white, silver, black, grey cars are common
        v = rng.choice([235, 190, 40, 120]) + rng.integers(-12, 13)
        return (int(v), int(v), int(v + rng.integers(-6, 7)))
    h, s, v = rng.random(), rng.uniform(0.35, 0.9), rng.uniform(0.4, 0.95)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def _glass(rng):
    return (int(rng.integers(120, 170)), int(rng.integers(165, 205)), int(rng.integers(200, 235)))


def _wheels(layer: _Layer, xs, cy, r, rng):
    for cx in xs:
        layer.circle((cx, cy), r, (int(rng.integers(20, 40)),) * 3)
        layer.circle((cx, cy), r * 0.5, (int(rng.integers(150, 200)),) * 3)


def _frame(L: float, height: float, wheel: float, rng):
    """A canvas `height * L` tall, body and glass colours, wheel radius, ground row."""
    H = int(height * L) + 2
    return _Layer(H, int(L) + 2), _body_color(rng), _glass(rng), wheel * L, H - 1


# Each vehicle is drawn facing right in a local canvas of length `L` (pixels) with the
# ground line at the bottom row; the caller flips it to face left.

def _car(L: float, rng) -> _Layer:
    lay, body, glass, r, g = _frame(L, 0.62, 0.1, rng)
    bot = g - 0.55 * r
    top = bot - 0.19 * L
    lay.poly([(0, bot), (0, top + 0.04 * L), (0.05 * L, top), (0.92 * L, top + 0.02 * L),
              (L, top + 0.08 * L), (L, bot)], body)
    roof = top - 0.17 * L
    lay.poly([(0.18 * L, top), (0.31 * L, roof), (0.64 * L, roof), (0.8 * L, top)], body)
    lay.poly([(0.23 * L, top - 0.015 * L), (0.325 * L, roof + 0.025 * L),
              (0.47 * L, roof + 0.025 * L), (0.47 * L, top - 0.015 * L)], glass)
    lay.poly([(0.5 * L, top - 0.015 * L), (0.5 * L, roof + 0.025 * L),
              (0.63 * L, roof + 0.025 * L), (0.75 * L, top - 0.015 * L)], glass)
    lay.line((0.49 * L, top + 0.01 * L), (0.49 * L, bot - 0.03 * L), _shade(body, 0.6), 0.012 * L)
    lay.ellipse((0.975 * L, top + 0.07 * L), (0.025 * L, 0.018 * L), (250, 235, 140))
    lay.rect(0, top + 0.04 * L, 0.025 * L, top + 0.08 * L, (200, 30, 30))
    _wheels(lay, (0.2 * L, 0.8 * L), g - r, r, rng)
    return lay


def _pickup(L: float, rng) -> _Layer:
    lay, body, glass, r, g = _frame(L, 0.6, 0.11, rng)
    bot = g - 0.8 * r
    top = bot - 0.17 * L
    lay.poly([(0, bot), (0, top - 0.04 * L), (0.42 * L, top - 0.04 * L), (0.42 * L, top),
              (0.95 * L, top + 0.01 * L), (L, top + 0.06 * L), (L, bot)], body)
    lay.rect(0.03 * L, top - 0.03 * L, 0.39 * L, top - 0.005 * L, _shade(body, 0.45))  # open bed
    roof = top - 0.2 * L
    lay.poly([(0.43 * L, top), (0.43 * L, roof), (0.64 * L, roof), (0.77 * L, top)], body)
    lay.poly([(0.47 * L, top - 0.02 * L), (0.47 * L, roof + 0.03 * L),
              (0.63 * L, roof + 0.03 * L), (0.72 * L, top - 0.02 * L)], glass)
    lay.ellipse((0.975 * L, top + 0.05 * L), (0.025 * L, 0.02 * L), (250, 235, 140))
    lay.rect(0, top, 0.02 * L, top + 0.05 * L, (200, 30, 30))
    _wheels(lay, (0.18 * L, 0.8 * L), g - r, r, rng)
    return lay


def _bus(L: float, rng) -> _Layer:
    lay, body, glass, r, g = _frame(L, 0.4, 0.075, rng)
    bot = g - 0.5 * r
    top = bot - 0.3 * L
    c = 0.03 * L
    lay.poly([(0, bot), (0, top + c), (c, top), (L - c, top), (L, top + c), (L, bot)], body)
    lay.rect(0, top + 0.19 * L, L, top + 0.215 * L, _shade(_body_color(rng), 0.9))  # stripe
    n = int(rng.integers(5, 9))
    x0, x1, w = 0.04 * L, 0.78 * L, 0.74 * L / n
    for i in range(n):
        lay.rect(x0 + i * w + 0.012 * L, top + 0.045 * L, x0 + (i + 1) * w - 0.012 * L,
                 top + 0.14 * L, glass)
    lay.rect(0.8 * L, top + 0.045 * L, 0.875 * L, bot - 0.02 * L, _shade(glass, 0.7))  # door
    lay.rect(0.9 * L, top + 0.035 * L, 0.99 * L, top + 0.17 * L, glass)  # windscreen
    lay.ellipse((0.98 * L, bot - 0.04 * L), (0.015 * L, 0.012 * L), (250, 235, 140))
    _wheels(lay, (0.16 * L, 0.82 * L), g - r, r, rng)
    return lay


def _truck(L: float, rng) -> _Layer:
    H = int(0.52 * L) + 2
    lay = _Layer(H, int(L) + 2)
    cab, box, glass = _body_color(rng), _body_color(rng), _glass(rng)
    r = 0.08 * L
    g = H - 1
    bot = g - 0.9 * r
    lay.rect(0, bot - 0.04 * L, L, bot, (45, 45, 48))  # chassis
    btop = bot - 0.42 * L
    lay.rect(0, btop, 0.71 * L, bot - 0.04 * L, box)
    lay.line((0.02 * L, btop + 0.03 * L), (0.69 * L, btop + 0.03 * L), _shade(box, 0.75), 0.01 * L)
    ctop = bot - 0.3 * L
    lay.poly([(0.74 * L, bot), (0.74 * L, ctop), (0.94 * L, ctop), (L, ctop + 0.08 * L),
              (L, bot)], cab)
    lay.poly([(0.8 * L, ctop + 0.03 * L), (0.93 * L, ctop + 0.03 * L),
              (0.975 * L, ctop + 0.1 * L), (0.8 * L, ctop + 0.1 * L)], glass)
    lay.ellipse((0.985 * L, bot - 0.04 * L), (0.012 * L, 0.012 * L), (250, 235, 140))
    _wheels(lay, (0.12 * L, 0.27 * L, 0.86 * L), g - r, r, rng)
    return lay


def _motorcycle(L: float, rng) -> _Layer:
    H = int(0.62 * L) + 2
    lay = _Layer(H, int(L) + 2)
    body = _body_color(rng)
    dark = (int(rng.integers(25, 45)),) * 3
    metal = (int(rng.integers(140, 190)),) * 3
    r = 0.18 * L
    g = H - 1
    cy = g - r
    rear, front = (0.2 * L, cy), (0.8 * L, cy)
    seat = (0.4 * L, cy - 1.15 * r)
    bar = (0.72 * L, cy - 1.75 * r)
    t = 0.045 * L
    for cx in (rear[0], front[0]):
        lay.circle((cx, cy), r, dark, thickness=max(2, round(0.08 * L)))
        lay.circle((cx, cy), 0.25 * r, metal)
    lay.line(rear, seat, metal, t)
    lay.line(rear, (0.5 * L, cy), metal, t)
    lay.line(front, bar, metal, t)
    lay.rect(0.42 * L, cy - 0.75 * r, 0.6 * L, cy + 0.05 * r, (70, 70, 75))  # engine
    lay.ellipse((0.56 * L, cy - 1.1 * r), (0.12 * L, 0.055 * L), body, angle=-8)  # tank
    lay.ellipse(seat, (0.11 * L, 0.035 * L), (30, 28, 28))
    lay.line(bar, (bar[0] - 0.07 * L, bar[1] - 0.03 * L), dark, 0.035 * L)  # handlebar
    lay.ellipse((0.78 * L, cy - 1.3 * r), (0.03 * L, 0.03 * L), (250, 235, 140))  # lamp
    lay.ellipse((0.2 * L, cy - 1.05 * r), (0.1 * L, 0.03 * L), body)  # rear fender
    return lay


_DRAW = {"car": _car, "pickup": _pickup, "bus": _bus, "truck": _truck, "motorcycle": _motorcycle}


def _noise(rng, h, w, cells, amp):
    """Smooth value noise: a coarse random grid upsampled, so texture does not depend on the
    rendering size."""
    grid = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) * amp


def _jitter(rng, color, amount=14):
    return np.clip(np.asarray(color, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _background(rng, kind, H, W, horizon) -> np.ndarray:
    sky_top, sky_low, ground, amp = _PALETTE[kind]
    img = np.empty((H, W, 3), np.float32)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = _jitter(rng, sky_top) * (1 - t) + _jitter(rng, sky_low) * t
    gh = H - horizon
    base = _jitter(rng, ground, 12)
    tex = (_noise(rng, gh, W, 6, amp) + _noise(rng, gh, W, 24, amp * 0.6))[..., None]
    img[horizon:] = base + tex * np.array([1.0, 1.0, 1.0], np.float32)
    if kind == "grass":
        img[horizon:, :, 1] += _noise(rng, gh, W, 40, 10)
    elif kind == "desert":  # dune ripples
        yy = np.arange(gh, dtype=np.float32)[:, None]
        phase = _noise(rng, gh, W, 4, 3.0)
        img[horizon:] += (6 * np.sin(yy / max(gh, 1) * 40 + phase))[..., None]
    elif kind == "snow":
        img[horizon:, :, 2] += 6
    img = np.clip(img, 0, 255).astype(np.uint8)
    if kind == "road":  # lane markings
        for frac in sorted(rng.uniform(0.25, 0.9, int(rng.integers(1, 3)))):
            y = horizon + int(frac * gh)
            th = max(2, int(0.012 * H + 0.02 * H * frac))
            dash, gap = int(W * rng.uniform(0.08, 0.14)), int(W * rng.uniform(0.06, 0.1))
            x = int(rng.integers(-dash, 0))
            while x < W:
                cv2.rectangle(img, (x, y), (x + dash, y + th), (235, 235, 225), -1)
                x += dash + gap
    elif kind == "dirt":  # pebbles
        for _ in range(int(rng.integers(10, 30))):
            c = (int(rng.integers(0, W)), int(rng.integers(horizon, H)))
            s = int(rng.integers(1, max(2, H // 60)))
            cv2.ellipse(img, c, (s + 1, s), 0, 0, 360, tuple(int(v) for v in
                        _jitter(rng, (95, 60, 40), 15)), -1)
    if kind not in ("snow",) and rng.random() < 0.6:  # clouds
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.integers(0, W), rng.integers(0, max(1, int(horizon * 0.7)))
            for _ in range(3):
                ax = (int(W * rng.uniform(0.04, 0.09)), int(W * rng.uniform(0.02, 0.04)))
                off = (int(cx + rng.integers(-W // 16, W // 16 + 1)),
                       int(cy + rng.integers(-H // 40, H // 40 + 1)))
                cv2.ellipse(img, off, ax, 0, 0, 360, (245, 245, 248), -1)
    return img


def _tree(lay, x, y, s, rng, kind):
    trunk = _jitter(rng, (95, 65, 40), 12)
    lay.rect(x - 0.06 * s, y - 0.5 * s, x + 0.06 * s, y, trunk)
    leaf = _jitter(rng, (40, 110, 45) if kind != "snow" else (40, 85, 55), 18)
    if rng.random() < 0.5:  # pine
        for k in range(3):
            yb = y - 0.3 * s - k * 0.3 * s
            lay.poly([(x - 0.4 * s + k * 0.08 * s, yb), (x, yb - 0.5 * s),
                      (x + 0.4 * s - k * 0.08 * s, yb)], leaf)
    else:
        for dx, dy, rr in ((0, -0.85, 0.4), (-0.22, -0.6, 0.3), (0.22, -0.62, 0.3)):
            lay.circle((x + dx * s, y + dy * s), rr * s, _shade(leaf, rng.uniform(0.85, 1.15)))


def _house(lay, x, y, s, rng):
    w, h = s * rng.uniform(0.9, 1.4), s * rng.uniform(0.6, 0.9)
    wall = _jitter(rng, rng.choice([(210, 200, 180), (180, 120, 90), (200, 210, 215),
                                    (230, 215, 160)]), 15)
    lay.rect(x - w / 2, y - h, x + w / 2, y, wall)
    lay.poly([(x - w / 2 - 0.08 * s, y - h), (x, y - h - 0.45 * s),
              (x + w / 2 + 0.08 * s, y - h)], _jitter(rng, (130, 50, 40), 20))
    lay.rect(x - 0.1 * s, y - 0.38 * s, x + 0.1 * s, y, (90, 60, 40))
    for side in (-1, 1):
        cx = x + side * w * 0.3
        lay.rect(cx - 0.1 * s, y - h * 0.75, cx + 0.1 * s, y - h * 0.45, (240, 230, 170))


def _pole(lay, x, y, s, rng):
    gray = _jitter(rng, (110, 110, 115), 15)
    lay.line((x, y), (x, y - 1.6 * s), gray, max(2, 0.05 * s))
    lay.line((x, y - 1.6 * s), (x + 0.3 * s, y - 1.55 * s), gray, max(2, 0.04 * s))
    lay.ellipse((x + 0.3 * s, y - 1.52 * s), (0.08 * s, 0.04 * s), (250, 245, 200))


def _sign(lay, x, y, s, rng):
    lay.line((x, y), (x, y - 1.1 * s), (120, 120, 125), max(2, 0.05 * s))
    c, r = (x, y - 1.1 * s), 0.22 * s
    shape = rng.integers(0, 3)
    if shape == 0:
        lay.circle(c, r, (200, 30, 30))
        lay.circle(c, r * 0.7, (245, 245, 245))
    elif shape == 1:
        lay.poly([(c[0] - r, c[1] + r * 0.8), (c[0], c[1] - r), (c[0] + r, c[1] + r * 0.8)],
                 (200, 30, 30))
        lay.poly([(c[0] - r * 0.6, c[1] + r * 0.55), (c[0], c[1] - r * 0.5),
                  (c[0] + r * 0.6, c[1] + r * 0.55)], (245, 245, 245))
    else:
        lay.rect(c[0] - r, c[1] - r * 0.7, c[0] + r, c[1] + r * 0.7, (30, 80, 190))


def _person(lay, x, y, s, rng):
    shirt = _jitter(rng, _body_color(rng), 0)
    lay.line((x - 0.06 * s, y), (x, y - 0.45 * s), (40, 40, 70), max(2, 0.07 * s))
    lay.line((x + 0.06 * s, y), (x, y - 0.45 * s), (40, 40, 70), max(2, 0.07 * s))
    lay.rect(x - 0.09 * s, y - 0.85 * s, x + 0.09 * s, y - 0.42 * s, shirt)
    lay.circle((x, y - 0.95 * s), 0.1 * s, _jitter(rng, (225, 180, 150), 30))


def _bush(lay, x, y, s, rng):
    leaf = _jitter(rng, (50, 120, 50), 20)
    for _ in range(int(rng.integers(3, 6))):
        lay.ellipse((x + rng.uniform(-0.5, 0.5) * s, y - rng.uniform(0.15, 0.35) * s),
                    (rng.uniform(0.25, 0.4) * s, rng.uniform(0.18, 0.3) * s),
                    _shade(leaf, rng.uniform(0.8, 1.2)))


def _fence(lay, x, y, s, rng):
    wood = _jitter(rng, (160, 120, 80), 20)
    w = s * rng.uniform(1.0, 1.6)
    for k in range(int(w / (0.25 * s)) + 1):
        px = x - w / 2 + k * 0.25 * s
        lay.rect(px - 0.04 * s, y - 0.6 * s, px + 0.04 * s, y, wood)
    for h in (0.45, 0.2):
        lay.rect(x - w / 2, y - h * s - 0.04 * s, x + w / 2, y - h * s + 0.04 * s, wood)


def _occluder(rng, W, H, box) -> _Layer:
    """Something in front of a vehicle: a bush, fence, pole, sign or person near its box."""
    x0, y0, x1, y1 = box
    lay = _Layer(H, W)
    vw, vh = x1 - x0, y1 - y0
    x = rng.uniform(x0 + 0.1 * vw, x1 - 0.1 * vw)
    y = min(H - 1, y1 + rng.uniform(0, 0.08) * vh)
    kind = rng.choice(["bush", "fence", "pole", "sign", "person"])
    if kind == "bush":
        _bush(lay, x, y, vh * rng.uniform(0.7, 1.1), rng)
    elif kind == "fence":
        _fence(lay, x, y, vh * rng.uniform(0.6, 0.9), rng)
    elif kind == "pole":
        _pole(lay, x, y, vh * rng.uniform(0.9, 1.3), rng)
    elif kind == "sign":
        _sign(lay, x, y, vh * rng.uniform(0.9, 1.3), rng)
    else:
        _person(lay, x, y, vh * rng.uniform(0.9, 1.3), rng)
    return lay


def _size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def make_scene(seed: int, size: int | tuple[int, int] = 128, *,
               label: int | str | None = None, background: str | None = None,
               confounded: bool | None = None, vehicles: int | None = None,
               occlusion: float = 0.4, distractors: bool = True) -> Scene:
    """Draw the scene for `seed` at `size` (pixels, or (H, W)).

    label: class index or name (random if None). background: one of BACKGROUNDS; if None,
    `confounded=True` picks the class's CONFOUND background, `confounded=False` any other,
    and None any at random. vehicles: 1-3 vehicles of the class (random if None).
    occlusion: chance that each vehicle gets something drawn in front of it.
    """
    rng = np.random.default_rng(seed)
    if label is None:
        label = int(rng.integers(len(CLASSES)))
    elif isinstance(label, str):
        label = CLASSES.index(label)
    name = CLASSES[label]
    if background is None:
        if confounded is None:
            background = str(rng.choice(BACKGROUNDS))
        elif confounded:
            background = CONFOUND[name]
        else:
            background = str(rng.choice([b for b in BACKGROUNDS if b != CONFOUND[name]]))
    elif background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; use one of {BACKGROUNDS}")
    n = int(rng.choice([1, 1, 1, 2, 2, 3])) if vehicles is None else int(vehicles)
    if not 1 <= n <= 3:
        raise ValueError("a scene holds 1 to 3 vehicles")

    h, w = _size(size)
    H, W = h * _SS, w * _SS
    horizon = int(H * rng.uniform(0.3, 0.55))
    canvas = _background(rng, background, H, W, horizon)

    # Distractors behind the vehicles, on the far part of the ground.
    if distractors:
        back = _Layer(H, W)
        for _ in range(int(rng.integers(0, 5))):
            kind = rng.choice(["tree", "house", "pole", "sign", "person"])
            x = rng.uniform(0, W)
            y = horizon + rng.uniform(0.0, 0.25) * (H - horizon)
            s = H * rng.uniform(0.12, 0.25) * (1 + (y - horizon) / H)
            if kind == "tree":
                _tree(back, x, y, s * 1.3, rng, background)
            elif kind == "house":
                _house(back, x, y, s * 1.2, rng)
            elif kind == "pole":
                _pole(back, x, y, s, rng)
            elif kind == "sign":
                _sign(back, x, y, s * 0.8, rng)
            else:
                _person(back, x, y, s * 0.7, rng)
        canvas[back.alpha > 0] = back.rgb[back.alpha > 0]
    backdrop = canvas.copy()

    # Vehicles, far (higher up) first so nearer ones overlap them.
    lo, hi = _LENGTH[name]
    crowd = (1.0, 0.8, 0.68)[n - 1]
    bases = np.sort(rng.uniform(horizon + 0.2 * (H - horizon), H * 0.97, n))
    slots = rng.permutation(n)
    cars = _Layer(H, W)
    each, boxes = [], []
    for i, yb in enumerate(bases):
        depth = 0.8 + 0.35 * (yb - horizon) / (H - horizon)
        L = W * rng.uniform(lo, hi) * crowd * depth
        veh = _DRAW[name](L, rng)
        if rng.random() < 0.5:
            veh.flip()
        vh, vw = veh.alpha.shape
        span = W / n
        cx = (slots[i] + rng.uniform(0.2, 0.8)) * span if n > 1 else rng.uniform(0.25, 0.75) * W
        x0 = int(round(cx - vw / 2))
        x0 = int(np.clip(x0, -int(0.15 * vw), W - int(0.85 * vw)))
        y0 = int(round(yb)) - vh + 1
        one = _Layer(H, W)
        veh.paste_into(one, x0, y0)
        veh.paste_into(cars, x0, y0)
        ys, xs = np.nonzero(one.alpha)
        each.append(one.alpha > 0)
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    covered = cars.alpha > 0
    canvas[covered] = cars.rgb[covered]

    # Occluders in front: kept only if the vehicle stays mostly visible.
    for vmask, box in zip(each, boxes):
        if rng.random() >= occlusion:
            continue
        occ = _occluder(rng, W, H, box)
        hit = occ.alpha > 0
        visible = vmask & covered
        if (visible & ~hit).sum() < 0.6 * vmask.sum():
            continue
        canvas[hit] = occ.rgb[hit]
        backdrop[hit] = occ.rgb[hit]
        covered &= ~hit

    # Shrink (anti-aliasing), then the same lighting and sensor noise on both images.
    image = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    back = cv2.resize(backdrop, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    cover = cv2.resize(covered.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    gain = rng.uniform(0.85, 1.15)
    noise = rng.normal(0, 3.0, (h, w, 3)).astype(np.float32)
    image = np.clip(image * gain + noise, 0, 255).astype(np.uint8)
    back = np.clip(back * gain + noise, 0, 255).astype(np.uint8)
    fboxes = tuple((int(a // _SS), int(b // _SS), int(math.ceil(c / _SS)), int(math.ceil(d / _SS)))
                   for a, b, c, d in boxes)
    return Scene(image=image, mask=cover > 0, label=label, class_name=name,
                 background=background, boxes=fboxes, seed=int(seed), backdrop=back)


#: Generated scenes in expected gradients' "scenes" background set (seeds of the tests' range).
BACKGROUND_SCENES = 16


def background_scenes(size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """The "scenes" background set of expected gradients at a model's input size."""
    return tuple(make_scene(7_000_000 + i, size).image for i in range(BACKGROUND_SCENES))
