"""Hard negatives: different photos that share one designed element (a logo, a band, a box, a page).

A :class:`SharedDesign` is one recurring element, fixed by a design seed and drawn with the same
pixels at the same relative place on every photo it is given: a publisher's corner logo or
watermark, a caption band or a frame (family ``mark``: the photo unchanged under, beside or inside
it), a brand's printed box composited into a background photo (``packaging``, in
:mod:`.packaging`), or a web page, social post or catalogue page around the photos (``template``,
in :mod:`.pages`). Renders of one design from different photos are not copies of each other, so a
search that matches them has matched the shared element alone; the same design, photos and
``rng`` give the same image.

Every design draws its fixed parameters (colours, words, fonts, shapes, layout, corner, size rule)
from ``numpy.random.default_rng([seed, k])``, ``k`` the kind's position in :data:`KINDS`, in the
same order whatever the photos, and its per-image parameters (product names, prices, headlines,
placement, angles, lighting) from the ``rng`` given to :meth:`SharedDesign.render`; marks have
none. Each kind has 2-4 structural variants chosen by the seed, described by its renderer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from imgsearch.errors import ConfigError

from . import packaging, pages
from .drawing import (
    BOLD,
    Logo,
    brand_name,
    cover,
    hsv_colour,
    ink,
    new_layer,
    over,
    put,
    rgba,
    rounded,
    shade,
    text,
)
from .overlays import FONTS, WORDS, check_image, random_colour

__all__ = ["KINDS", "SharedDesign", "design"]

Image = np.ndarray
Rng = np.random.Generator


def _corner_logo(d: Rng, photos: list[Image], rng: Rng, translucent: bool) -> Image:
    """A :class:`Logo` (4 styles x 4 emblems) in a fixed corner, opaque or at a fixed alpha 0.3-0.6;
    its box about 3, 8 or 15 % of a 4:3 image of the photo's width, or 32-72 px tall."""
    logo, corner, margin = Logo.draw_from(d), int(d.integers(4)), d.uniform(0.02, 0.045)
    share = float(d.choice([0.03, 0.08, 0.15]))
    pixels = int(d.integers(32, 72)) if d.random() < 0.25 else 0
    opacity = d.uniform(0.3, 0.6) if translucent else 1.0
    out = photos[0].copy()
    h, w = out.shape[:2]
    aspect = logo.width(100) / 100
    mark = logo.fit(0.9 * w, min(0.9 * h, pixels or math.sqrt(share * 0.75 * w * w / aspect)))
    m = round(margin * w)
    x = m if corner in (0, 3) else w - mark.shape[1] - m
    y = m if corner < 2 else h - mark.shape[0] - m
    over(out, mark, max(0, min(x, w - mark.shape[1])), max(0, min(y, h - mark.shape[0])), opacity)
    return out


def _tiled_text(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """A watermark ("(c) NAME PHOTO", "NAME.COM", ...) tiled over the whole image on a lattice
    anchored at the top-left corner, turned by 20-45 degrees, alpha 0.15-0.4; white with or without
    a dark rim, or dark with a light rim; lines staggered or not; its size fixed in px or relative
    to the width."""
    name = brand_name(d).upper()
    circled, words = [
        (True, f"{name} PHOTO"),
        (False, f"{name}.COM"),
        (True, f"{name} STOCK"),
        (False, f"PREVIEW {name}"),
    ][int(d.integers(4))]
    font, sign = FONTS[int(d.integers(len(FONTS)))], (1 if d.random() < 0.7 else -1)
    angle, opacity = math.radians(d.uniform(20, 45)) * sign, d.uniform(0.15, 0.4)
    colours = [((255, 255, 255), (40, 40, 40)), ((255, 255, 255), None), ((30, 30, 30), (235, 235, 235))]
    fill, rim = colours[int(d.integers(3))]
    relative, pixels, fixed = d.uniform(0.035, 0.06), int(d.integers(14, 28)), d.random() < 0.3
    gap_u, gap_v, stagger = d.uniform(0.3, 1.0), d.uniform(2.0, 4.0), d.random() < 0.5
    out = photos[0].copy()
    h, w = out.shape[:2]
    th = pixels if fixed else max(8, round(relative * w))  # cap height, px
    scale = th / cv2.getTextSize("H", font, 1.0, 1)[0][1]
    thick, ring = max(1, round(scale * 1.5)), round(0.7 * th) if circled else 0
    lead = 2 * ring + th // 2 if circled else 0
    pu = round((lead + cv2.getTextSize(words, font, scale, thick)[0][0]) * (1 + gap_u))
    pv = round(th * gap_v)
    cell = new_layer(2 * pv, pu)  # two rows of the lattice, the second shifted when staggered
    for row, shift in ((0, 0), (1, pu // 2 if stagger else 0)):
        y = row * pv + round(1.3 * th)
        for x in (shift - pu, shift):  # what runs past the cell's right edge wraps round to its left
            for colour, extra in ((rim, 2), (fill, 0)) if rim else ((fill, 0),):
                stroke = rgba(colour)
                if circled:  # the (c) sign: Hershey fonts have no glyphs beyond ASCII
                    centre, c_org = (x + ring, y - th // 2), (x + ring - th // 3, y - th // 5)
                    cv2.circle(cell, centre, ring, stroke, thick // 2 + 1 + extra, cv2.LINE_AA)
                    text(cell, "c", c_org, font, 0.6 * scale, stroke, thick + extra)
                text(cell, words, (x + lead, y), font, scale, stroke, thick + extra)
    c, s = math.cos(angle), math.sin(angle)
    inverse = np.array([[c, -s], [s, c]])  # image (x, y) -> lattice (u, v), the text along +u
    uv = np.array([[0, 0], [w, 0], [0, h], [w, h]]) @ inverse.T
    lo = np.floor(uv.min(0) / (pu, 2 * pv)).astype(int)  # in cells
    hi = np.ceil(uv.max(0) / (pu, 2 * pv)).astype(int)
    lattice = np.tile(cell, (hi[1] - lo[1], hi[0] - lo[0], 1))
    m = np.hstack([inverse, -(lo * (pu, 2 * pv))[:, None]])
    over(
        out,
        cv2.warpAffine(lattice, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP),
        opacity=opacity,
    )
    return out


def _caption_band(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """A band 6-10 % of the width tall, at the top or bottom, appended (the image grows) or drawn
    over the photo's edge (opaque or alpha 0.65-0.85), dark, brand-coloured or white, with an accent
    rule and 3 layouts: name and web address, centred name and tagline, logo and credit line."""
    name, logo, style = brand_name(d), Logo.draw_from(d), int(d.integers(3))
    top, appended, frac = d.random() < 0.5, d.random() < 0.5, d.uniform(0.06, 0.1)
    colour = [random_colour(d, 10, 50), hsv_colour(d, (0.5, 1.0), (0.35, 0.8)), random_colour(d, 235, 255)][
        int(d.integers(3))
    ]
    accent = hsv_colour(d, (0.6, 1.0), (0.6, 1.0))
    opacity = 1.0 if d.random() < 0.6 else d.uniform(0.65, 0.85)
    font, tagline = FONTS[int(d.integers(len(FONTS)))], " ".join(d.choice(WORDS, size=2))
    photo = photos[0]
    h, w = photo.shape[:2]
    bh, pad, fg = max(12, round(frac * w)), 0.03 * w, rgba(ink(colour))
    band = new_layer(bh, w)
    cv2.rectangle(band, (0, 0), (w, bh), rgba(colour, 1.0 if appended else opacity), -1)
    rule = max(1, bh // 12)
    cv2.rectangle(band, (0, bh - rule if top else 0), (w, bh if top else rule - 1), rgba(accent), -1)
    if style == 0:
        put(band, name.upper(), font, (pad, 0.15 * bh, 0.5 * w, 0.75 * bh), fg)
        put(band, f"www.{name.lower()}.com", BOLD, (0.5 * w, 0.3 * bh, 0.5 * w - pad, 0.45 * bh), fg, 1)
    elif style == 1:
        put(band, name.upper(), font, (pad, 0.08 * bh, w - 2 * pad, 0.55 * bh), fg, 0.5)
        put(band, tagline, BOLD, (pad, 0.6 * bh, w - 2 * pad, 0.32 * bh), fg, 0.5)
    else:
        mark = logo.fit(0.4 * w, 0.7 * bh)
        over(band, mark, round(pad), (bh - mark.shape[0]) // 2)
        credit = f"Photo: {name} / {tagline}"
        put(band, credit, BOLD, (0.45 * w, 0.3 * bh, 0.55 * w - pad, 0.45 * bh), fg, 1)
    if not appended:
        out = photo.copy()
        over(out, band, 0, 0 if top else h - bh)
        return out
    out = np.zeros((h + bh, w, 3), np.uint8)
    out[bh if top else 0 : h + (bh if top else 0)] = photo
    over(out, band, 0, 0 if top else h)
    return out


_FRAME_COLOURS = ((92, 60, 36), (186, 150, 76), (24, 24, 24), (244, 240, 230), (38, 68, 52), (112, 30, 42))


def _frame(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """A border 4-6.5 % of the short side wide in one of 6 frame colours, with double inset lines,
    corner brackets or a row of diamonds, with or without a name plate under the photo, added
    around the photo or drawn over its edge with the photo shrunk (cut to the window's aspect)."""
    colour = _FRAME_COLOURS[int(d.integers(len(_FRAME_COLOURS)))]
    accent = (214, 184, 110) if ink(colour)[0] == 255 else (70, 52, 36)
    ornament, plate = int(d.integers(3)), d.random() < 0.5
    inside, f = d.random() < 0.5, d.uniform(0.04, 0.065)
    label = f"{brand_name(d)} {d.choice(['studio', 'gallery', 'photography', 'portraits'])}"
    font, photo = FONTS[int(d.integers(len(FONTS)))], photos[0]
    h, w = photo.shape[:2]
    b = max(5, round(f * min(h, w)))
    foot = 2 * b if plate else b
    W, H = (w, h) if inside else (w + 2 * b, h + b + foot)
    canvas = np.empty((H, W, 3), np.uint8)
    canvas[:] = colour
    t = max(1, b // 8)
    if ornament == 0:
        for k in (round(0.25 * b), round(0.55 * b)):
            cv2.rectangle(canvas, (k, k), (W - 1 - k, H - 1 - k), accent, t)
    elif ornament == 1:
        cv2.rectangle(canvas, (b // 4, b // 4), (W - 1 - b // 4, H - 1 - b // 4), accent, 1)
        for sx, sy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
            cx, cy = (b // 2 if sx > 0 else W - 1 - b // 2), (b // 2 if sy > 0 else H - 1 - b // 2)
            bracket = np.array([(cx, cy + sy * 3 * b), (cx, cy), (cx + sx * 3 * b, cy)], np.int32)
            cv2.polylines(canvas, [bracket], False, accent, t + 1, cv2.LINE_AA)
            cv2.circle(canvas, (cx, cy), max(2, b // 4), accent, -1, cv2.LINE_AA)
    else:
        r, mid = max(2, b // 4), b / 2
        for x0, y0, x1, y1 in (
            (mid, mid, W - mid, mid),
            (mid, H - mid, W - mid, H - mid),
            (mid, mid, mid, H - mid),
            (W - mid, mid, W - mid, H - mid),
        ):
            n = max(1, round(max(x1 - x0, y1 - y0) / (1.8 * b)))
            for k in range(n + 1):
                x, y = x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n
                diamond = np.rint([(x - r, y), (x, y - r), (x + r, y), (x, y + r)]).astype(np.int32)
                cv2.fillConvexPoly(canvas, diamond, accent, cv2.LINE_AA)
    cv2.rectangle(canvas, (b - 2, b - 2), (W - b + 1, H - foot + 1), shade(colour, 0.5), 2)  # the bevel
    canvas[b : H - foot, b : W - b] = cover(photo, W - 2 * b, H - b - foot) if inside else photo
    if plate:
        x0, y0, x1, y1 = round(0.3 * W), H - foot + round(0.2 * b), round(0.7 * W), H - foot + round(1.1 * b)
        rounded(canvas, x0, y0, x1, y1, b // 4, accent)
        put(canvas, label, font, (x0 + b / 3, y0, x1 - x0 - 2 * b / 3, y1 - y0), ink(accent), 0.5)
    return canvas


_Render = Callable[[Rng, list[Image], Rng], Image]
_TABLE: list[tuple[str, str, int, _Render]] = [
    ("corner_logo_opaque", "mark", 1, partial(_corner_logo, translucent=False)),
    ("corner_logo_translucent", "mark", 1, partial(_corner_logo, translucent=True)),
    ("tiled_text", "mark", 1, _tiled_text),
    ("caption_band", "mark", 1, _caption_band),
    ("frame", "mark", 1, _frame),
    ("packaging", "packaging", 2, packaging.packaging),
    ("shelf", "packaging", 2, packaging.shelf),
    ("web_page", "template", 1, pages.web_page),
    ("social_post", "template", 1, pages.social_post),
    ("catalogue_sheet", "template", 4, pages.catalogue_sheet),
]
_RENDER = {kind: fn for kind, _, _, fn in _TABLE}

KINDS: dict[str, tuple[str, int]] = {kind: (family, n) for kind, family, n, _ in _TABLE}
"""Every kind of shared design, in a fixed order: kind -> (family, photos one image needs)."""


@dataclass(frozen=True)
class SharedDesign:
    """One recurring element drawn identically on many photos; build it with :func:`design`.

    Attributes
    ----------
    kind : str
        A key of :data:`KINDS`.
    family : str
        ``"mark"``, ``"packaging"`` or ``"template"``, as :data:`KINDS` gives for ``kind``.
    seed : int
        Non-negative; fixes the design (colours, words, fonts, shapes, layout, corner...).
    photos : int
        How many content photos one image needs, as :data:`KINDS` gives: marks 1, packaging 2
        (product, background), web pages and social posts 1, catalogue sheets 4.
    """

    kind: str
    family: str
    seed: int
    photos: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"unknown shared design kind {self.kind!r}; valid kinds are: {', '.join(KINDS)}"
            )
        if (self.family, self.photos) != KINDS[self.kind]:
            family, n = KINDS[self.kind]
            raise ConfigError(
                f"kind {self.kind!r} is family {family!r} with {n} photo(s) an image, "
                f"got family {self.family!r} with {self.photos}; build designs with design()"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    def render(self, photos: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """Draw the design with these photos.

        Parameters
        ----------
        photos : sequence of ``self.photos`` (H, W, 3) uint8 arrays, RGB
            Both sides of each at least 16 px; not modified. Marks: the photo. Packaging: the
            product photo, then the background photo. Templates: the photos of the slots, in order.
        rng : numpy.random.Generator
            Source of the per-image parameters (product names, prices, headlines, placement,
            angles, lighting); marks have none. The design's own come from its seed.

        Returns
        -------
        (H', W', 3) uint8 array, RGB, C-contiguous
            Marks: the photo's size (appended bands and outer frames: larger). Packaging: the
            background's size. Templates: a page 400-560 px wide and tall as the design fixes
            (social posts: taller for taller photos).

        Raises
        ------
        ConfigError
            If ``photos`` is not a sequence of ``self.photos`` valid images or ``rng`` is not a
            ``numpy.random.Generator``.
        """
        if isinstance(photos, np.ndarray) or len(photos) != self.photos:
            got = f"an array of shape {photos.shape}" if isinstance(photos, np.ndarray) else str(len(photos))
            raise ConfigError(f"{self.kind} needs a sequence of {self.photos} photo(s), got {got}")
        for photo in photos:
            check_image(photo)
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        fixed = np.random.default_rng([int(self.seed), list(KINDS).index(self.kind)])
        return np.ascontiguousarray(_RENDER[self.kind](fixed, list(photos), rng), dtype=np.uint8)


def design(kind: str, seed: int) -> SharedDesign:
    """The shared design of ``kind`` fixed by ``seed``.

    Parameters
    ----------
    kind : str
        A key of :data:`KINDS`.
    seed : int
        Non-negative; the same (kind, seed) always gives the same design.

    Raises
    ------
    ConfigError
        If ``kind`` is unknown (the message lists the valid kinds) or ``seed`` is not a
        non-negative integer.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown shared design kind {kind!r}; valid kinds are: {', '.join(KINDS)}")
    family, n = KINDS[kind]
    return SharedDesign(kind, family, seed, n)
