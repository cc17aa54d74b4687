"""Drawing helpers of the shared designs in :mod:`.negatives`: colours, names, layers, text boxes, logos.

Images are (H, W, 3) uint8 RGB arrays; a *layer* is an (h, w, 4) uint8 array of premultiplied RGBA
(colour already multiplied by its opacity), so OpenCV's anti-aliased drawing on it, and
:func:`over` of one layer on another, are both the "over" operator; text is the exception, drawn
by :func:`text` and :func:`put` on colour and alpha apart. Every random value is drawn from the
generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .overlays import FONTS, draw_lines, fit_text

__all__ = [
    "BOLD",
    "Colour",
    "Logo",
    "brand_name",
    "cover",
    "fit_inside",
    "hsv_colour",
    "ink",
    "new_layer",
    "over",
    "paste",
    "product_name",
    "put",
    "rgba",
    "rounded",
    "shade",
    "text",
]

Image = np.ndarray
Colour = tuple[int, ...]
BOLD = cv2.FONT_HERSHEY_DUPLEX
"""The font of interface and label texts."""
_SYLLABLES = "ka lo ri ven tor mi sa del ux ar no be zen fi ro tal mer io na vo lux pix el dor".split()
_ADJECTIVES = "classic golden crunchy organic fresh wild smoky creamy herbal spicy roasted honey".split()
_GOODS = "granola cookies crisps coffee tea cereal crackers muesli pasta sauce chocolate oats".split()


def hsv_colour(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> Colour:
    """An RGB colour of random hue, its saturation in ``s`` and value in ``v`` (fractions of 1)."""
    hsv = np.array([[[rng.uniform(0, 180), 255 * rng.uniform(*s), 255 * rng.uniform(*v)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def ink(colour: Colour) -> Colour:
    """Near-black or white, whichever reads on ``colour``."""
    return (25, 25, 25) if 0.3 * colour[0] + 0.59 * colour[1] + 0.11 * colour[2] > 150 else (255, 255, 255)


def shade(colour: Colour, factor: float) -> Colour:
    """``colour`` darkened (``factor`` < 1) or lightened, clipped to 255."""
    return tuple(min(255, round(c * factor)) for c in colour)


def rgba(colour: Colour, alpha: float = 1.0) -> Colour:
    """``colour`` premultiplied by ``alpha``, with its alpha: the value to draw with on a layer."""
    return (*(round(c * alpha) for c in colour[:3]), round(255 * alpha))


def brand_name(rng: np.random.Generator) -> str:
    """A made-up brand of 2-3 syllables, capitalised (e.g. ``"Velmira"``)."""
    return "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 3, endpoint=True)))).capitalize()


def product_name(rng: np.random.Generator) -> str:
    """A made-up product, e.g. ``"Golden Granola"``."""
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_GOODS)}".title()


def new_layer(h: int, w: int, colour: Colour | None = None) -> Image:
    """An (h, w, 4) layer: clear, or filled with an opaque ``colour``."""
    layer = np.zeros((h, w, 4), np.uint8)
    if colour is not None:
        layer[:] = rgba(colour)
    return layer


def over(image: Image, layer: Image, x: int = 0, y: int = 0, opacity: float = 1.0) -> None:
    """Composite ``layer`` at ``opacity`` over ``image`` (RGB, or RGBA: a layer) in place, its
    top-left corner at (x, y) >= 0; the part outside ``image`` is dropped.

    Each output value is ``min(top, alpha) + round(under * (255 - alpha) / 255)``: with the layer
    fixed, an affine function of the value under it (the ``min`` guards against a layer that is not
    quite premultiplied, which would otherwise saturate).
    """
    roi = image[y : y + layer.shape[0], x : x + layer.shape[1]]
    top = layer[: roi.shape[0], : roi.shape[1]]
    if not top.size:
        return
    if opacity != 1.0:
        top = cv2.convertScaleAbs(top, alpha=opacity)
    alpha = top[..., 3]
    keep = cv2.merge([255 - alpha] * roi.shape[2])
    colour = np.minimum(top[..., : roi.shape[2]], alpha[..., None])
    roi[:] = cv2.add(colour, cv2.multiply(np.ascontiguousarray(roi), keep, scale=1 / 255))


_Paint = Callable[[Image, int, int, Callable[[Colour], Colour]], object]


def _channels(canvas: Image, box: tuple[int, int, int, int], paint: _Paint) -> None:
    """Run ``paint(target, x0, y0, pick)`` to draw text on an RGB image (``target`` is the image,
    (x0, y0) = (0, 0), ``pick`` keeps colours) or on a layer: OpenCV's anti-aliased text writes its
    coverage into a 4th channel instead of blending it, so there ``paint`` runs twice, on copies of
    the colour and alpha of the part ``box`` = (x0, y0, x1, y1) of the layer, ``pick`` selecting
    the colour's channels, and (x0, y0) is where that part starts."""
    if canvas.shape[2] == 3:
        paint(canvas, 0, 0, lambda colour: colour)
        return
    x0, y0 = max(0, box[0]), max(0, box[1])
    roi = canvas[y0 : max(y0, box[3]), x0 : max(x0, box[2])]
    if roi.size:
        rgb, alpha = np.ascontiguousarray(roi[..., :3]), np.ascontiguousarray(roi[..., 3])
        paint(rgb, x0, y0, lambda colour: colour[:3])
        paint(alpha, x0, y0, lambda colour: colour[3:])
        roi[..., :3], roi[..., 3] = rgb, alpha


def text(
    canvas: Image, words: str, org: tuple[int, int], font: int, scale: float, colour: Colour, thickness: int
) -> None:
    """``cv2.putText`` anti-aliased, baseline left at ``org``, on an RGB image or a layer."""
    (w, h), base = cv2.getTextSize(words, font, scale, thickness)
    x, y, m = org[0], org[1], thickness + 2
    _channels(
        canvas,
        (x - m, y - h - m, x + w + m, y + base + m),
        lambda target, x0, y0, pick: cv2.putText(
            target, words, (x - x0, y - y0), font, scale, pick(colour), thickness, cv2.LINE_AA
        ),
    )


def put(
    canvas: Image,
    words: str,
    font: int,
    box: Sequence[float],
    colour: Colour,
    align: float = 0.0,
    outline: Colour | None = None,
) -> int:
    """Draw one line of text as large as fits ``box`` (x, y, w, h), aligned left (``align`` 0),
    centred (0.5) or right (1), vertically centred, on an RGB image or a layer; returns its width
    in px. Texts fitted to boxes of one height get one size, with or without descenders."""
    x, y, w, h = box
    wide, _, line_w = fit_text([words], font, max(1.0, w), 1e9)
    tall, line_h, _ = fit_text(["Hg"], font, 1e9, max(1.0, h))
    scale = min(wide, tall)
    line_h, line_w = round(line_h * scale / tall), round(line_w * scale / wide)
    left, top = round(x + align * (w - line_w)), round(y + (h - line_h) / 2)

    def paint(target: Image, x0: int, y0: int, pick: Callable[[Colour], Colour]) -> None:
        rim = None if outline is None else pick(outline)
        draw_lines(target, [words], font, scale, left - x0, top - y0, line_h, pick(colour), rim)

    m = line_h // 2 + 4
    _channels(canvas, (left - m, top - m, left + line_w + m, top + line_h + m), paint)
    return line_w


def rounded(canvas: Image, x0: int, y0: int, x1: int, y1: int, r: int, colour: Colour) -> None:
    """A filled rectangle from (x0, y0) to (x1, y1) inclusive, its corners rounded by ``r`` px."""
    r = max(0, min(r, (x1 - x0) // 2, (y1 - y0) // 2))
    cv2.rectangle(canvas, (x0 + r, y0), (x1 - r, y1), colour, -1)
    cv2.rectangle(canvas, (x0, y0 + r), (x1, y1 - r), colour, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(canvas, (cx, cy), r, colour, -1, cv2.LINE_AA)


def _resized(image: Image, w: int, h: int) -> Image:
    shrink = w * h < image.shape[0] * image.shape[1]
    mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (max(1, w), max(1, h)), interpolation=mode)


def cover(photo: Image, w: int, h: int) -> Image:
    """The centre of ``photo`` cut to the aspect of w x h and resized to exactly (h, w, 3)."""
    ph, pw = photo.shape[:2]
    s = max(w / pw, h / ph)
    cw, ch = min(pw, round(w / s)), min(ph, round(h / s))
    x0, y0 = (pw - cw) // 2, (ph - ch) // 2
    return _resized(photo[y0 : y0 + ch, x0 : x0 + cw], w, h)


def fit_inside(photo: Image, w: int, h: int) -> Image:
    """``photo`` resized, aspect kept, to the largest size inside w x h."""
    s = min(w / photo.shape[1], h / photo.shape[0])
    return _resized(photo, round(photo.shape[1] * s), round(photo.shape[0] * s))


def paste(canvas: Image, photo: Image, x: int, y: int) -> None:
    """Copy an RGB ``photo`` into an RGB image or a layer (opaque there) at (x, y)."""
    canvas[y : y + photo.shape[0], x : x + photo.shape[1], :3] = photo
    if canvas.shape[2] == 4:
        canvas[y : y + photo.shape[0], x : x + photo.shape[1], 3] = 255


@dataclass(frozen=True)
class Logo:
    """A made-up brand logo, drawn at any height by :meth:`draw`.

    ``style``: 0 emblem left of the name, 1 emblem over the name, 2 name and tagline on a plate,
    3 underlined wordmark. ``emblem``: 0 disc or 1 rounded square with the initial, 2 ring and dot,
    3 two peaks and a sun. Names on a photo get a rim in the contrasting ink so they read.
    """

    name: str
    tagline: str
    style: int
    emblem: int
    colours: tuple[Colour, Colour]  # brand, accent
    font: int

    @classmethod
    def draw_from(cls, rng: np.random.Generator) -> Logo:
        """A logo with every parameter drawn from ``rng`` (seven draws)."""
        name, tagline = brand_name(rng), str(rng.choice(["photo", "news", "studio", "media", "tv", "images"]))
        style, emblem = int(rng.integers(4)), int(rng.integers(4))
        colours = (hsv_colour(rng, (0.55, 1.0), (0.45, 0.9)), hsv_colour(rng, (0.5, 1.0), (0.6, 1.0)))
        return cls(name, tagline.upper(), style, emblem, colours, FONTS[int(rng.integers(len(FONTS)))])

    def _emblem(self, layer: Image, x: int, y: int, s: int) -> None:
        brand, accent = rgba(self.colours[0]), rgba(self.colours[1])
        if self.emblem < 2:
            if self.emblem == 0:
                cv2.circle(layer, (x + s // 2, y + s // 2), s // 2, brand, -1, cv2.LINE_AA)
            else:
                rounded(layer, x, y, x + s - 1, y + s - 1, s // 5, brand)
            letter = rgba(ink(self.colours[0]))
            put(layer, self.name[0], BOLD, (x + s * 0.2, y + s * 0.1, s * 0.6, s * 0.85), letter, 0.5)
        elif self.emblem == 2:
            cv2.circle(layer, (x + s // 2, y + s // 2), s * 2 // 5, accent, max(2, s // 7), cv2.LINE_AA)
            cv2.circle(layer, (x + s // 2, y + s // 2), s // 5, brand, -1, cv2.LINE_AA)
        else:
            peaks = [[(0, 1), (0.45, 0.15), (0.9, 1)], [(0.35, 1), (0.7, 0.4), (1, 1)]]
            for pts, colour in zip(peaks, (brand, accent), strict=True):
                poly = np.rint(np.array(pts) * (s - 1) + (x, y)).astype(np.int32)
                cv2.fillConvexPoly(layer, poly, colour, cv2.LINE_AA)
            cv2.circle(layer, (x + s * 4 // 5, y + s // 5), max(1, s // 9), accent, -1, cv2.LINE_AA)

    def _text(self, h: int) -> tuple[str, float, int]:
        """The name as drawn, its height and its width, for a logo ``h`` px tall."""
        name = self.name.upper() if self.style == 2 else self.name
        name_h = (0.6, 0.34, 0.5, 0.66)[self.style] * h
        return name, name_h, fit_text([name], self.font, 1e6, name_h)[2] + 2

    def width(self, height: int) -> int:
        """The width of the logo drawn ``height`` px tall."""
        h = max(12, height)
        name_w = self._text(h)[2]
        tag_w = fit_text([self.tagline], BOLD, 1e6, 0.3 * h)[2] + 2
        return (
            round((h * 1.2 + name_w, max(0.64 * h, name_w), max(name_w, tag_w) + 0.4 * h, name_w)[self.style])
            + 2
        )

    def draw(self, height: int) -> Image:
        """The logo on a clear (max(12, height), :meth:`width`, 4) layer."""
        h = max(12, height)
        name, name_h, name_w = self._text(h)
        layer = new_layer(h, self.width(h))
        w = layer.shape[1]
        brand, rim = rgba(self.colours[0]), rgba(ink(self.colours[0]))
        if self.style == 0:
            self._emblem(layer, 0, 0, h)
            put(layer, name, self.font, (1.15 * h, 0.2 * h, name_w, name_h), brand, outline=rim)
        elif self.style == 1:
            self._emblem(layer, (w - round(0.62 * h)) // 2, 0, round(0.62 * h))
            put(layer, name, self.font, (0, 0.64 * h, w, name_h), brand, 0.5, rim)
        elif self.style == 2:
            rounded(layer, 0, 0, w - 1, h - 1, h // 6, brand)
            put(layer, name, self.font, (0.2 * h, 0.08 * h, w - 0.4 * h, name_h), rim, 0.5)
            cv2.line(layer, (h // 5, round(0.62 * h)), (w - h // 5, round(0.62 * h)), rim, 1)
            put(layer, self.tagline, BOLD, (0.2 * h, 0.64 * h, w - 0.4 * h, 0.3 * h), rim, 0.5)
        else:
            put(layer, name, self.font, (0, 0, name_w, name_h), brand, outline=rim)
            cv2.rectangle(layer, (0, round(0.74 * h)), (w, round(0.86 * h)), rgba(self.colours[1]), -1)
        return layer

    def fit(self, w: float, h: float) -> Image:
        """The largest logo at most ``w`` x ``h`` px (at least 12 px tall)."""
        return self.draw(round(min(h, 100 * w / self.width(100))))
