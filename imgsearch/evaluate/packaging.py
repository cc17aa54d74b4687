"""The packaging kinds of :mod:`.negatives`: a brand's printed box, alone or on a shelf, in a photo.

A :class:`Brand` is the fixed design (logo, colours, layout, badge, box shape); its :meth:`Brand.face`
prints one box face around a product picture with a product name, and :func:`place` composites a
face or a shelf strip into a background photo in perspective, shaded, with a soft shadow.
Renderers take ``(d, photos, rng)``: ``d`` draws the design, ``rng`` the per-image parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .drawing import (
    BOLD,
    Colour,
    Logo,
    cover,
    ink,
    new_layer,
    over,
    paste,
    product_name,
    put,
    rgba,
    rounded,
    shade,
)
from .overlays import FONTS, random_colour

__all__ = ["Brand", "packaging", "place", "shelf"]

Image = np.ndarray
Rng = np.random.Generator


@dataclass(frozen=True)
class Brand:
    """A brand's box: ``layout`` 0 header band and window, 1 diagonal band and oval window, 2 dotted
    side stripe; ``aspect`` the face's height / width (0.75, 1 or 1.3), ``depth`` the box's depth /
    face width (0.2-0.45); a badge ("NEW", "BIO", ...), a paper colour and a font for names."""

    logo: Logo
    layout: int
    aspect: float
    depth: float
    paper: Colour
    badge: str
    font: int

    @classmethod
    def draw_from(cls, d: Rng) -> Brand:
        logo, layout, aspect = Logo.draw_from(d), int(d.integers(3)), float(d.choice([0.75, 1.0, 1.3]))
        depth, paper = d.uniform(0.2, 0.45), random_colour(d, 225, 255)
        badge = str(d.choice(["NEW", "BIO", "XL", "-30%", "100%", "TOP", "+20%"]))
        return cls(logo, layout, aspect, depth, paper, badge, FONTS[int(d.integers(len(FONTS)))])

    def face(self, photo: Image, name: str, fh: int, fw: int) -> Image:
        """The (fh, fw, 3) face: ``photo`` cut to fit the window, ``name`` under it."""
        brand, accent = self.logo.colours
        face = np.empty((fh, fw, 3), np.uint8)
        face[:] = brand if self.layout == 1 else self.paper
        if self.layout == 0:
            face[: round(0.22 * fh)] = brand
            face[round(0.86 * fh) :] = accent
            window, logo, name_box = (0.08, 0.26, 0.92, 0.68), (0.12, 0.025, 0.76, 0.17), (0.06, 0.7, 0.88)
        elif self.layout == 1:
            band = np.array([(0, 0.62), (1, 0.42), (1, 0.56), (0, 0.76)]) * (fw, fh)
            cv2.fillConvexPoly(face, np.rint(band).astype(np.int32), accent, cv2.LINE_AA)
            window, logo, name_box = (0.1, 0.24, 0.9, 0.7), (0.05, 0.03, 0.62, 0.17), (0.06, 0.74, 0.88)
        else:
            face[:, : round(0.2 * fw)] = brand
            step = max(4, round(0.07 * fw))
            for y in range(step // 2, fh, step):
                for x in range(step // 2 + (step // 2 if y // step % 2 else 0), round(0.2 * fw) - 2, step):
                    cv2.circle(face, (x, y), max(1, step // 5), accent, -1, cv2.LINE_AA)
            window, logo, name_box = (0.27, 0.22, 0.95, 0.66), (0.27, 0.03, 0.68, 0.17), (0.27, 0.69, 0.68)
        x0, y0, x1, y1 = (round(v * s) for v, s in zip(window, (fw, fh, fw, fh), strict=True))
        picture = cover(photo, x1 - x0, y1 - y0)
        if self.layout == 1:  # an oval window with a paper rim
            oval = np.zeros((y1 - y0, x1 - x0), np.uint8)
            inner = (((x1 - x0) / 2, (y1 - y0) / 2), (x1 - x0 - 2, y1 - y0 - 2), 0)
            cv2.ellipse(oval, inner, (255,), -1, cv2.LINE_AA)
            roi = face[y0:y1, x0:x1]
            roi[:] = np.rint(roi + (picture - roi.astype(np.float32)) * (oval[..., None] / 255.0))
            rim = (((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), 0)
            cv2.ellipse(face, rim, self.paper, max(2, fw // 60), cv2.LINE_AA)
        else:
            face[y0:y1, x0:x1] = picture
            cv2.rectangle(face, (x0 - 1, y0 - 1), (x1, y1), brand, max(1, fw // 100))
        lx, ly, lw, lh = (v * s for v, s in zip(logo, (fw, fh, fw, fh), strict=True))
        mark = self.logo.fit(lw - lh * 0.3, lh * 0.8)  # on a paper plate, as the face may be in its colour
        px0, py0, px1, py1 = round(lx), round(ly), round(lx + mark.shape[1] + lh * 0.3), round(ly + lh)
        rounded(face, px0, py0, px1, py1, round(lh / 5), self.paper)
        over(face, mark, round(lx + lh * 0.15), round(ly + lh * 0.1))
        nx, ny, nw = name_box
        name_ink = self.paper if self.layout == 1 else brand
        put(face, name, self.font, (nx * fw, ny * fh, nw * fw, 0.11 * fh), name_ink, 0.5)
        if self.layout == 0:
            put(face, "NET WT 500 g", BOLD, (0.06 * fw, 0.885 * fh, 0.5 * fw, 0.08 * fh), ink(accent))
        else:
            for k in range(3):
                y = round((0.87 + 0.04 * k) * fh)
                cv2.line(face, (round(0.3 * fw), y), (round(0.94 * fw), y), accent, max(1, fh // 120))
        cx, cy, r = 0.84 * fw, 0.22 * fh, 0.11 * fw  # the badge, a star of 10 points
        turn = np.arange(20) * np.pi / 10
        radius = r * (1 - 0.2 * (np.arange(20) % 2))
        star = np.c_[cx + radius * np.cos(turn), cy + radius * np.sin(turn)]
        cv2.fillPoly(face, [np.rint(star).astype(np.int32)], accent, cv2.LINE_AA)
        put(face, self.badge, BOLD, (cx - 0.65 * r, cy - 0.5 * r, 1.3 * r, r), ink(accent), 0.5)
        return face


_SIDES = (  # a box's sides: corners (front 0-3 clockwise from top-left, back 4-7), outward normal, light
    ([0, 1, 5, 4], (0, -1, 0), 0.9),
    ([1, 2, 6, 5], (1, 0, 0), 0.7),
    ([2, 3, 7, 6], (0, 1, 0), 0.5),
    ([3, 0, 4, 7], (-1, 0, 0), 0.7),
)


def place(
    background: Image,
    layer: Image,
    rng: Rng,
    tilt: float,
    turn: float,
    depth: float = 0.0,
    side: Colour = (0, 0, 0),
) -> Image:
    """Composite ``layer`` into a copy of ``background`` as the front of a box ``depth`` x its width
    deep (0: a flat card), its visible sides shades of ``side``: seen from up to ``tilt`` degrees
    off-axis in yaw and pitch, turned in-plane by up to ``turn`` degrees, lit by a gradient, casting
    a soft shadow, at a random place, scaled down to at most 95 % of each side if larger."""
    H, W = background.shape[:2]
    lh, lw = layer.shape[:2]
    yaw, pitch = np.radians(rng.uniform(-tilt, tilt, size=2))
    roll = math.radians(rng.uniform(-turn, turn))
    front = np.array([[-lw / 2, -lh / 2, 0], [lw / 2, -lh / 2, 0], [lw / 2, lh / 2, 0], [-lw / 2, lh / 2, 0]])
    ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    box = np.vstack([front, front + np.array([0, 0, depth * lw])]) @ (ry @ rx).T
    f = 2.5 * max(lw, lh)  # the camera looks along +z from (0, 0, -f)
    spin = np.array([[math.cos(roll), math.sin(roll)], [-math.sin(roll), math.cos(roll)]])
    pts = box[:, :2] * (f / (f + box[:, 2:])) @ spin
    pts *= min(1.0, 0.95 * W / np.ptp(pts[:, 0]), 0.95 * H / np.ptp(pts[:, 1]))
    pts += (
        rng.uniform(-pts[:, 0].min(), W - pts[:, 0].max()),
        rng.uniform(-pts[:, 1].min(), H - pts[:, 1].max()),
    )
    gx, gy = rng.uniform(-0.35, 0.35, size=2)
    ramp = (
        0.95
        + gx * np.linspace(-0.5, 0.5, lw, dtype=np.float32)
        + gy * np.linspace(-0.5, 0.5, lh, dtype=np.float32)[:, None]
    )
    light = np.rint(255 * np.clip(ramp, 0.6, 1.0)).astype(np.uint8)
    lit = layer.copy()
    lit[..., :3] = cv2.multiply(np.ascontiguousarray(layer[..., :3]), cv2.merge([light] * 3), scale=1 / 255)
    out = background.copy()
    sigma, strength = 0.015 * H + 1, rng.uniform(0.3, 0.5)
    offset = rng.uniform(0.01, 0.03) * H * np.array([rng.uniform(-1, 1), 1])  # light from above
    hull = cv2.convexHull(pts.astype(np.float32))[:, 0] + offset
    x0, y0 = np.maximum(0, np.floor(hull.min(0) - 3 * sigma)).astype(int)
    x1, y1 = np.minimum((W, H), np.ceil(hull.max(0) + 3 * sigma)).astype(int)
    if x1 > x0 and y1 > y0:
        shadow = np.zeros((y1 - y0, x1 - x0), np.float32)
        outline = np.rint((hull - (x0, y0)) * 4).astype(np.int32)
        cv2.fillConvexPoly(shadow, outline, (1.0,), cv2.LINE_AA, shift=2)
        keep = np.rint(255 * (1 - strength * cv2.GaussianBlur(shadow, (0, 0), sigma))).astype(np.uint8)
        out[y0:y1, x0:x1] = cv2.multiply(out[y0:y1, x0:x1], cv2.merge([keep] * 3), scale=1 / 255)
    for idx, normal, brightness in _SIDES if depth > 0 else ():
        if (ry @ rx @ normal) @ (box[idx].mean(0) + np.array([0, 0, f])) < 0:  # facing the camera
            quad = np.rint(pts[idx] * 4).astype(np.int32)
            cv2.fillConvexPoly(out, quad, shade(side, brightness), cv2.LINE_AA, shift=2)
    x0, y0 = np.maximum(0, np.floor(pts[:4].min(0))).astype(int)
    x1, y1 = np.minimum((W, H), np.ceil(pts[:4].max(0)) + 1).astype(int)
    corners = np.array([[0, 0], [lw, 0], [lw, lh], [0, lh]], np.float32)
    m = cv2.getPerspectiveTransform(corners, (pts[:4] - (x0, y0)).astype(np.float32))
    front_face = cv2.warpPerspective(lit, m, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)
    over(out, front_face, int(x0), int(y0))
    return out


def packaging(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """One box of the brand, its window showing the product photo (``photos[0]``), a random product
    name, in the background photo (``photos[1]``): the face 20-50 % of the background's area before
    perspective (its height 30-75 % of the background's), tilted up to 25 degrees, turned up to 25."""
    brand = Brand.draw_from(d)
    product, background = photos
    H, W = background.shape[:2]
    fh = round(np.clip(math.sqrt(rng.uniform(0.2, 0.5) * W * H * brand.aspect), 0.3 * H, 0.75 * H))
    face = brand.face(product, product_name(rng), fh, round(fh / brand.aspect))
    layer = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    return place(background, layer, rng, tilt=25, turn=25, depth=brand.depth, side=brand.logo.colours[0])


def shelf(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """2-4 upright boxes of the brand (fixed count) side by side on a wooden, white or dark shelf
    with price tags, each box showing another part of the product photo (``photos[0]``) and another
    name: the strip 70-95 % of the background's width (``photos[1]``), tilted up to 12 degrees."""
    brand, n = Brand.draw_from(d), int(d.integers(2, 4, endpoint=True))
    plank = [(168, 120, 72), (226, 226, 220), (70, 72, 78)][int(d.integers(3))]
    currency = str(d.choice(["$", "EUR ", ""]))
    product, background = photos
    H, W = background.shape[:2]
    aspect = max(brand.aspect, 1.15)
    fh = round(min(rng.uniform(0.7, 0.95) * W / (n + 0.06 * (n + 1)) * aspect, 0.7 * H))
    fw, gap, ph = round(fh / aspect), max(2, round(0.06 * fh / aspect)), max(8, round(0.12 * fh))
    strip = new_layer(gap + fh + ph, n * fw + (n + 1) * gap)
    cv2.rectangle(strip, (0, gap + fh), (strip.shape[1], strip.shape[0]), rgba(plank), -1)
    edge = (0, gap + fh + 1), (strip.shape[1], gap + fh + 1)  # the lit front edge of the shelf
    cv2.line(strip, *edge, rgba(shade(plank, 1.25)), max(1, ph // 8))
    for i in range(n):
        s = rng.uniform(0.5, 0.8)
        cw, ch = round(s * product.shape[1]), round(s * product.shape[0])
        px = int(rng.integers(0, product.shape[1] - cw, endpoint=True))
        py = int(rng.integers(0, product.shape[0] - ch, endpoint=True))
        x = gap + i * (fw + gap)
        paste(strip, brand.face(product[py : py + ch, px : px + cw], product_name(rng), fh, fw), x, gap)
        tx0, ty0, tx1, ty1 = x + fw // 4, gap + fh + ph // 4, x + 3 * fw // 4, gap + fh + ph - ph // 6
        cv2.rectangle(strip, (tx0, ty0), (tx1, ty1), rgba((250, 250, 244)), -1)
        price = f"{currency}{int(rng.integers(1, 20))}.{int(rng.choice([49, 95, 99])):02d}"
        put(strip, price, BOLD, (tx0 + 2, ty0, tx1 - tx0 - 4, ty1 - ty0), rgba((20, 20, 20)), 0.5)
    return place(background, strip, rng, tilt=12, turn=4)
