"""The overlay transforms: foreign pixels drawn over or around a photo (text, logo, border, page).

Plain functions ``(image, rng) -> image`` on (H, W, 3) uint8 RGB arrays, with every parameter drawn
from ``rng``; :mod:`.transforms` registers them under their names with their descriptions and
checks inputs. Also holds the small pixel and text helpers they share with the other transforms
and with :mod:`.negatives`: :data:`MIN_SIDE`, :func:`check_image`, :func:`random_colour`,
:func:`resize`, the Hershey :data:`FONTS`, the filler :data:`WORDS`, and :func:`text_lines`,
:func:`fit_text` and :func:`draw_lines`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from imgsearch.errors import ConfigError

__all__ = [
    "FONTS",
    "MIN_SIDE",
    "WORDS",
    "border",
    "caption_band",
    "check_image",
    "draw_lines",
    "fit_text",
    "logo_overlay",
    "random_colour",
    "resize",
    "screenshot",
    "text_lines",
    "text_overlay",
]

MIN_SIDE = 16
"""Smallest side, in pixels, of any input and output."""

FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
)
"""The OpenCV Hershey fonts the overlays draw with (ASCII only)."""
WORDS = (
    "sale",
    "news",
    "photo",
    "copyright",
    "free",
    "shop",
    "today",
    "best",
    "travel",
    "daily",
    "share",
    "follow",
    "like",
    "www",
    "image",
    "studio",
    "summer",
    "offer",
    "club",
    "live",
    "weekend",
    "special",
    "world",
    "story",
    "click",
    "more",
    "original",
    "meme",
    "lol",
    "2024",
)
"""Filler words for random captions, titles and names."""

Image = np.ndarray


def random_colour(rng: np.random.Generator, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    """An RGB colour, each channel uniform in [lo, hi]."""
    c = rng.integers(lo, hi, size=3, endpoint=True)
    return int(c[0]), int(c[1]), int(c[2])


def check_image(image: object) -> None:
    """Raise :class:`ConfigError` unless ``image`` is an (H, W, 3) uint8 array with both sides >= 16 px."""
    if not isinstance(image, np.ndarray):
        raise ConfigError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"image must be an (H, W, 3) uint8 array, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ConfigError(f"image sides must be at least {MIN_SIDE} px, got {image.shape[:2]}")


def resize(image: Image, width: float, height: float) -> Image:
    """Resize to the rounded size, at least :data:`MIN_SIDE` a side; INTER_AREA to shrink, else cubic."""
    width, height = max(MIN_SIDE, round(width)), max(MIN_SIDE, round(height))
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def text_lines(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` lines of 1-3 random :data:`WORDS` each."""
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 4, endpoint=True)))) for _ in range(n)]


def _text_size(lines: list[str], font: int) -> tuple[float, float]:
    """Widest line and line pitch, in px, at font scale 1."""
    sizes = [cv2.getTextSize(s, font, 1.0, 2) for s in lines]
    return max(sz[0][0] for sz in sizes), max(sz[0][1] + sz[1] for sz in sizes) * 1.3


def fit_text(lines: list[str], font: int, width: float, height: float) -> tuple[float, int, int]:
    """Largest font scale so the block fits ``width`` x ``height``; also its line height, width (px)."""
    line_w, line_h = _text_size(lines, font)
    scale = min(width / line_w, height / (line_h * len(lines)))
    return scale, round(line_h * scale), round(line_w * scale)


def draw_lines(
    canvas: Image,
    lines: list[str],
    font: int,
    scale: float,
    x: int,
    y: int,
    line_h: int,
    colour: tuple[int, ...],
    outline: tuple[int, ...] | None = None,
) -> None:
    """Draw ``lines`` anti-aliased from (x, y) down, one every ``line_h`` px, optionally outlined.

    ``colour`` and ``outline`` have one value per channel of ``canvas`` (RGB, or premultiplied
    RGBA on a 4-channel layer).
    """
    thickness = max(1, round(scale * 2))
    for i, line in enumerate(lines):
        base = (x, y + round((i + 0.8) * line_h))
        if outline is not None:
            cv2.putText(canvas, line, base, font, scale, outline, thickness + 2, cv2.LINE_AA)
        cv2.putText(canvas, line, base, font, scale, colour, thickness, cv2.LINE_AA)


def caption_band(image: Image, rng: np.random.Generator, lo: float = 0.18, hi: float = 0.28) -> Image:
    """A meme: a white band of ``lo``-``hi`` of the final height on top, 1-2 centred lines of black
    caption in it, the photo below it unchanged."""
    h, w = image.shape[:2]
    share = float(rng.uniform(lo, hi))
    band_h = round(h * share / (1.0 - share))
    lines = text_lines(rng, int(rng.integers(1, 2, endpoint=True)))
    font = FONTS[int(rng.integers(len(FONTS)))]
    scale, line_h, _ = fit_text(lines, font, 0.92 * w, 0.8 * band_h)
    band = np.full((band_h, w, 3), 255, np.uint8)
    y = (band_h - line_h * len(lines)) // 2
    for i, line in enumerate(lines):  # each line centred on its own
        x = (w - round(cv2.getTextSize(line, font, scale, max(1, round(scale * 2)))[0][0])) // 2
        draw_lines(band, [line], font, scale, max(0, x), y + i * line_h, line_h, (0, 0, 0))
    return np.concatenate([band, image], axis=0)


def text_overlay(image: Image, rng: np.random.Generator, lo: float = 0.10, hi: float = 0.25) -> Image:
    """Opaque words whose bounding block covers about ``lo``-``hi`` of the area.

    Lines are added while the block is too wide, and words while it is too tall, until the
    block reaches 90 % of the drawn target area (or 12 lines).
    """
    h, w = image.shape[:2]
    target = float(rng.uniform(lo, hi)) * w * h
    font = FONTS[int(rng.integers(len(FONTS)))]
    lines = text_lines(rng, int(rng.integers(2, 5, endpoint=True)))
    for _ in range(24):
        unit_w, unit_h = _text_size(lines, font)
        ideal = math.sqrt(target / (unit_w * unit_h * len(lines)))
        scale = min(ideal, 0.95 * w / unit_w, 0.95 * h / (unit_h * len(lines)))
        if scale >= 0.95 * ideal or len(lines) >= 12:
            break
        if scale * unit_w >= 0.94 * w:
            lines += text_lines(rng, 1)
        else:
            i = int(np.argmin([len(t) for t in lines]))
            lines[i] += " " + str(rng.choice(WORDS))
    scale, line_h, line_w = fit_text(lines, font, scale * unit_w, 1e9)
    x = int(rng.integers(0, max(0, w - line_w), endpoint=True))
    y = int(rng.integers(0, max(0, h - line_h * len(lines)), endpoint=True))
    colour = random_colour(rng)
    outline = (255 - colour[0], 255 - colour[1], 255 - colour[2]) if rng.random() < 0.5 else None
    out = image.copy()
    draw_lines(out, lines, font, scale, x, y, line_h, colour, outline)
    return out


def logo_overlay(image: Image, rng: np.random.Generator) -> Image:
    """A semi-transparent block (background, filled shape, word) in a random corner."""
    h, w = image.shape[:2]
    area = float(rng.uniform(0.05, 0.15)) * w * h
    pw = int(min(0.9 * w, math.sqrt(area * rng.uniform(1.5, 3.0))))
    ph = int(min(0.9 * h, area / pw))
    patch = np.empty((ph, pw, 3), dtype=np.uint8)
    patch[:] = random_colour(rng)
    r = ph // 2
    shape_colour = random_colour(rng)
    if rng.random() < 0.5:
        cv2.circle(patch, (r, r), max(1, int(r * 0.8)), shape_colour, -1, cv2.LINE_AA)
    else:
        cv2.rectangle(patch, (r // 4, r // 4), (2 * r - r // 4, 2 * r - r // 4), shape_colour, -1)
    word = [str(rng.choice(WORDS))]
    font = FONTS[int(rng.integers(len(FONTS)))]
    scale, line_h, _ = fit_text(word, font, max(4.0, pw - 2.2 * r), 0.8 * ph)
    draw_lines(patch, word, font, scale, 2 * r + r // 8, (ph - line_h) // 2, line_h, random_colour(rng))
    mx, my = int(rng.uniform(0.01, 0.04) * w), int(rng.uniform(0.01, 0.04) * h)
    x = mx if rng.random() < 0.5 else w - pw - mx
    y = my if rng.random() < 0.5 else h - ph - my
    alpha = float(rng.uniform(0.5, 0.85))
    out = image.copy()
    roi = out[y : y + ph, x : x + pw]
    roi[:] = cv2.addWeighted(patch, alpha, roi, 1.0 - alpha, 0.0)
    return out


def border(image: Image, rng: np.random.Generator) -> Image:
    h, w = image.shape[:2]
    top, bottom = (round(h * rng.uniform(0.05, 0.25)) for _ in range(2))
    left, right = (round(w * rng.uniform(0.05, 0.25)) for _ in range(2))
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=random_colour(rng))


def screenshot(image: Image, rng: np.random.Generator) -> Image:
    """Shrink the photo to 30-60 % of a light page's width among grey text lines and boxes."""
    h, w = image.shape[:2]
    page_w = max(w, h, 128)
    photo_w = max(round(page_w * rng.uniform(0.3, 0.6)), math.ceil(MIN_SIDE * w / h))
    photo = resize(image, photo_w, photo_w * h / w)
    ph, pw = photo.shape[:2]
    margin = max(2, page_w // 25)
    page_w = max(page_w, pw + 2 * margin)  # only for very elongated photos
    header = int(page_w * rng.uniform(0.05, 0.1))
    page_h = max(int(page_w * rng.uniform(0.6, 1.0)), header + ph + 2 * margin)
    page = np.empty((page_h, page_w, 3), dtype=np.uint8)
    page[:] = random_colour(rng, 225, 255)
    page[:header] = random_colour(rng, 40, 200)
    title = text_lines(rng, 1)
    scale, line_h, _ = fit_text(title, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * page_w, 0.8 * header)
    draw_lines(
        page,
        title,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        header // 3,
        (header - line_h) // 2,
        line_h,
        (255, 255, 255),
    )
    grey = int(rng.integers(90, 170))
    step = max(4, int(page_w * rng.uniform(0.025, 0.04)))
    for y in range(header + margin, page_h - margin, step):  # "text" lines of random length
        end = int(page_w - margin - rng.uniform(0.0, 0.4) * page_w)
        cv2.rectangle(
            page, (margin, y), (max(margin + 4, end), y + max(1, step // 3)), (grey, grey, grey), -1
        )
    for _ in range(int(rng.integers(1, 3, endpoint=True))):  # boxes, e.g. ads or buttons
        bx, by = int(rng.integers(0, page_w - margin)), int(rng.integers(header, page_h - margin))
        bw, bh = int(page_w * rng.uniform(0.1, 0.3)), int(page_w * rng.uniform(0.05, 0.15))
        cv2.rectangle(page, (bx, by), (bx + bw, by + bh), (grey, grey, grey), 1)
    x = int(rng.integers(margin, max(margin, page_w - pw - margin), endpoint=True))
    y = int(rng.integers(header + margin, max(header + margin, page_h - ph - margin), endpoint=True))
    page[y - margin // 2 : y + ph + margin // 2, x - margin // 2 : x + pw + margin // 2] = page[-1, -1]
    page[y : y + ph, x : x + pw] = photo
    return page
