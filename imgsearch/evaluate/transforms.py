"""Named, seeded image transforms that make the modified copies an evaluation searches for.

Every transform is a pure function ``(image, rng) -> image``: ``image`` is an (H, W, 3) uint8 RGB
array, ``rng`` a :class:`numpy.random.Generator` from which all parameters are drawn, so the same
seed always gives the same output. Outputs are new C-contiguous (H', W', 3) uint8 arrays with at
least 16 px on each side; the input is never modified. Each :class:`Transform` documents its
parameter ranges in ``description``.

Conventions: ``rot90`` turns **counter-clockwise**, like :func:`numpy.rot90` (``rot270`` is a
clockwise quarter turn); angles in ``rotate_*`` are counter-clockwise for positive values, as in
:func:`cv2.getRotationMatrix2D`. ``exact_copy`` is the identity on arrays and carries
``exact_copy=True`` so that a harness copies the original file bytes instead of re-encoding.

Families: ``identity``, ``compression``, ``geometry``, ``rotate``, ``crop``, ``colour``, ``filter``
(blur, noise), ``overlay`` (foreign pixels added: text, logo, border, screenshot page) and ``combo``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from imgsearch.errors import ConfigError

from .overlays import (
    MIN_SIDE,
    border,
    check_image,
    logo_overlay,
    random_colour,
    resize,
    screenshot,
    text_overlay,
)

__all__ = [
    "TRANSFORMS",
    "Transform",
    "apply_transform",
    "crop",
    "get_transforms",
    "jpeg",
    "perspective",
    "rotate",
]

Image = np.ndarray
TransformFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Transform:
    """One named, seeded image modification.

    Attributes
    ----------
    name : str
        Short snake_case key in :data:`TRANSFORMS`, e.g. ``"crop_25"``.
    family : str
        Group for reporting: ``identity``, ``compression``, ``geometry``, ``rotate``, ``crop``,
        ``colour``, ``filter``, ``overlay`` or ``combo``.
    description : str
        Human text with the parameter ranges.
    fn : callable
        ``fn(image, rng) -> image`` on (H, W, 3) uint8 RGB arrays.
    exact_copy : bool
        True when the modified copy is the original file byte for byte; ``fn`` is then the identity
        and a harness should copy the file rather than re-encode the array.
    """

    name: str
    family: str
    description: str
    fn: TransformFn
    exact_copy: bool = False

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply the transform.

        Parameters
        ----------
        image : (H, W, 3) uint8 array, RGB
            Both sides at least 16 px. Not modified.
        rng : numpy.random.Generator
            Source of every random parameter.

        Returns
        -------
        (H', W', 3) uint8 array, RGB, C-contiguous
            A new array with both sides at least 16 px.

        Raises
        ------
        ConfigError
            If ``image`` is not an (H, W, 3) uint8 array with both sides at least 16 px, or
            ``rng`` is not a ``numpy.random.Generator``.
        """
        check_image(image)
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        out = self.fn(image, rng)
        if np.may_share_memory(out, image):
            return np.array(out, dtype=np.uint8, order="C", copy=True)
        return np.ascontiguousarray(out, dtype=np.uint8)


# --------------------------------------------------------------------------- small helpers


def _pick(rng: np.random.Generator, lo: float, hi: float, away: float = 0.0) -> float:
    """Uniform in [lo, hi] when ``away`` is 0, else uniform in [lo, 1-away] or [1+away, hi]."""
    if away and rng.random() < 0.5:
        return float(rng.uniform(lo, 1.0 - away))
    return float(rng.uniform(1.0 + away if away else lo, hi))


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Magnitude uniform in [lo, hi] with a random sign."""
    return float(rng.uniform(lo, hi)) * (1.0 if rng.random() < 0.5 else -1.0)


def _lut(image: Image, table: np.ndarray) -> Image:
    return cv2.LUT(image, np.clip(np.rint(table), 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- geometry


def jpeg(image: Image, rng: np.random.Generator, lo: int, hi: int) -> Image:
    """JPEG round trip of an RGB image at a quality drawn from [lo, hi]."""
    quality = int(rng.integers(lo, hi, endpoint=True))
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:  # pragma: no cover - OpenCV always round-trips a valid uint8 image
        raise RuntimeError(f"JPEG round trip at quality {quality} failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _rescale(image: Image, rng: np.random.Generator, lo: float, hi: float) -> Image:
    s = float(rng.uniform(lo, hi))
    return resize(image, image.shape[1] * s, image.shape[0] * s)


def _aspect(image: Image, rng: np.random.Generator) -> Image:
    s = _pick(rng, 0.7, 1.4, away=0.07)
    h, w = image.shape[:2]
    return resize(image, w * s, h) if rng.random() < 0.5 else resize(image, w, h * s)


def perspective(image: Image, rng: np.random.Generator, amount: float = 0.08) -> Image:
    """Move each corner by up to ``amount`` of the side (uniform, x and y), black background."""
    h, w = image.shape[:2]
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    dst = src + rng.uniform(-amount, amount, size=(4, 2)).astype(np.float32) * [w, h]
    dst -= dst.min(axis=0)
    size = np.ceil(dst.max(axis=0)).astype(int) + 1
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    return cv2.warpPerspective(
        image,
        m,
        (max(MIN_SIDE, int(size[0])), max(MIN_SIDE, int(size[1]))),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )


def _largest_inscribed(w: int, h: int, angle_deg: float) -> tuple[float, float]:
    """Width and height of the largest axis-aligned rectangle inside a w x h rectangle rotated."""
    a = math.radians(angle_deg)
    sin_a, cos_a = abs(math.sin(a)), abs(math.cos(a))
    long_side, short_side = max(w, h), min(w, h)
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        x = 0.5 * short_side
        return (x / sin_a, x / cos_a) if w >= h else (x / cos_a, x / sin_a)
    cos_2a = cos_a * cos_a - sin_a * sin_a
    return (w * cos_a - h * sin_a) / cos_2a, (h * cos_a - w * sin_a) / cos_2a


def rotate(image: Image, angle: float, fill: tuple[int, int, int] | None) -> Image:
    """Rotate by ``angle`` degrees counter-clockwise on an expanded canvas.

    ``fill`` is the colour of the uncovered corners; ``None`` replicates the edge pixels.
    """
    h, w = image.shape[:2]
    a = math.radians(angle)
    nw = math.ceil(w * abs(math.cos(a)) + h * abs(math.sin(a)))
    nh = math.ceil(w * abs(math.sin(a)) + h * abs(math.cos(a)))
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    m[0, 2] += (nw - w) / 2.0
    m[1, 2] += (nh - h) / 2.0
    if fill is None:
        return cv2.warpAffine(image, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(
        image, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )


def _rotate_inscribed(image: Image, angle: float) -> Image:
    """Rotate, then keep the largest centred axis-aligned rectangle with no filled corners."""
    h, w = image.shape[:2]
    rotated = rotate(image, angle, fill=None)
    iw, ih = _largest_inscribed(w, h, angle)
    cw = min(rotated.shape[1], max(MIN_SIDE, int(iw) - 2))  # 1 px margin against edge blending
    ch = min(rotated.shape[0], max(MIN_SIDE, int(ih) - 2))
    x0, y0 = (rotated.shape[1] - cw) // 2, (rotated.shape[0] - ch) // 2
    return rotated[y0 : y0 + ch, x0 : x0 + cw]


def _rotate_small_crop(image: Image, rng: np.random.Generator, lo: float, hi: float) -> Image:
    return _rotate_inscribed(image, _signed(rng, lo, hi))


def _rotate_any(image: Image, rng: np.random.Generator) -> Image:
    angle = float(rng.uniform(15.0, 345.0))
    fill = random_colour(rng) if rng.random() < 0.5 else (0, 0, 0)
    return rotate(image, angle, fill)


def crop(image: Image, rng: np.random.Generator, lo: float, hi: float) -> Image:
    """Crop keeping an area fraction in [lo, hi], aspect 0.75-1.33x the original's, anywhere."""
    h, w = image.shape[:2]
    area = float(rng.uniform(lo, hi))
    ratio = math.exp(float(rng.uniform(math.log(0.75), math.log(1.33))))
    cw = min(w, max(MIN_SIDE, round(w * math.sqrt(area * ratio))))
    ch = min(h, max(MIN_SIDE, round(h * math.sqrt(area / ratio))))
    x0 = int(rng.integers(0, w - cw, endpoint=True))
    y0 = int(rng.integers(0, h - ch, endpoint=True))
    return image[y0 : y0 + ch, x0 : x0 + cw]


def _crop_rotate(image: Image, rng: np.random.Generator) -> Image:
    return rotate(crop(image, rng, 0.5, 0.7), _signed(rng, 5.0, 30.0), fill=(0, 0, 0))


def _crop_mirror(image: Image, rng: np.random.Generator) -> Image:
    return crop(image, rng, 0.5, 0.7)[:, ::-1]


# --------------------------------------------------------------------------- colour and filters


def _brightness_contrast(
    image: Image,
    rng: np.random.Generator,
    contrast: tuple[float, float] = (0.6, 1.5),
    brightness: float = 40.0,
) -> Image:
    alpha = _pick(rng, contrast[0], contrast[1], away=0.1)
    beta = float(rng.uniform(-brightness, brightness))
    return _lut(image, alpha * (np.arange(256) - 128.0) + 128.0 + beta)


def _saturation(
    image: Image, rng: np.random.Generator, lo: float = 0.2, hi: float = 2.5, away: float = 0.4
) -> Image:
    factor = _pick(rng, lo, hi, away=away)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[:, :, None]
    out = gray + factor * (image.astype(np.float32) - gray)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _hue(image: Image, rng: np.random.Generator) -> Image:
    shift = round(_signed(rng, 15.0, 60.0) / 2.0)  # OpenCV 8-bit hue is degrees / 2
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int16) + shift) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _gamma(image: Image, rng: np.random.Generator, lo: float = 0.6, hi: float = 1.6) -> Image:
    g = _pick(rng, lo, hi, away=0.1)
    return _lut(image, 255.0 * (np.arange(256) / 255.0) ** g)


def _grayscale(image: Image, rng: np.random.Generator) -> Image:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _blur(image: Image, rng: np.random.Generator) -> Image:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(1.0, 2.5)))


def _noise(image: Image, rng: np.random.Generator) -> Image:
    sigma = float(rng.uniform(5.0, 15.0))
    out = image.astype(np.float32) + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- combinations


def _combo_strong(image: Image, rng: np.random.Generator) -> Image:
    out = crop(image, rng, 0.5, 0.7)
    out = _rotate_inscribed(out, float(rng.uniform(-10.0, 10.0)))
    out = _brightness_contrast(out, rng, contrast=(0.75, 1.3), brightness=25.0)
    out = _saturation(out, rng, lo=0.5, hi=1.6, away=0.2)
    out = text_overlay(out, rng, lo=0.08, hi=0.15)
    return jpeg(out, rng, 35, 45)


def _combo_mirror(image: Image, rng: np.random.Generator) -> Image:
    out = _rescale(image[:, ::-1], rng, 0.5, 1.5)
    out = _brightness_contrast(out, rng, contrast=(0.8, 1.25), brightness=20.0)
    out = _gamma(out, rng, 0.75, 1.35)
    return logo_overlay(out, rng)


def _identity(image: Image, rng: np.random.Generator) -> Image:
    return image


def _fixed(op: Callable[[Image], Image]) -> TransformFn:
    def fn(image: Image, rng: np.random.Generator) -> Image:
        return op(image)

    return fn


_CROP_DESC = "off-centre crop keeping {} % of the area, aspect 0.75-1.33x the original's"
_TABLE: list[tuple[str, str, str, TransformFn]] = [
    ("exact_copy", "identity", "the original file, byte for byte", _identity),
    ("jpeg", "compression", "JPEG re-encode at quality 20-50", partial(jpeg, lo=20, hi=50)),
    (
        "rescale_down",
        "geometry",
        "uniform downscale by 0.3-0.7x (INTER_AREA)",
        partial(_rescale, lo=0.3, hi=0.7),
    ),
    (
        "rescale_up",
        "geometry",
        "uniform upscale by 1.3-2.0x (INTER_CUBIC)",
        partial(_rescale, lo=1.3, hi=2.0),
    ),
    ("aspect", "geometry", "one axis scaled by 0.7-0.93x or 1.07-1.4x, the other kept", _aspect),
    ("perspective", "geometry", "corners moved by up to 8 % of the side, black background", perspective),
    ("mirror", "geometry", "horizontal flip (image[:, ::-1])", _fixed(lambda im: im[:, ::-1])),
    ("vflip", "geometry", "vertical flip (image[::-1])", _fixed(lambda im: im[::-1])),
    ("rot90", "rotate", "quarter turn counter-clockwise, like np.rot90", _fixed(np.rot90)),
    ("rot180", "rotate", "half turn", _fixed(lambda im: im[::-1, ::-1])),
    ("rot270", "rotate", "quarter turn clockwise, np.rot90(image, -1)", _fixed(lambda im: np.rot90(im, -1))),
    (
        "rotate_small_crop",
        "rotate",
        "rotation by ±3-15°, cropped to the largest axis-aligned rectangle without filled corners",
        partial(_rotate_small_crop, lo=3.0, hi=15.0),
    ),
    (
        "rotate_any",
        "rotate",
        "rotation by 15-345°, canvas expanded, corners black or a random solid colour",
        _rotate_any,
    ),
    ("crop_70", "crop", _CROP_DESC.format("67-73"), partial(crop, lo=0.67, hi=0.73)),
    ("crop_45", "crop", _CROP_DESC.format("42-48"), partial(crop, lo=0.42, hi=0.48)),
    ("crop_25", "crop", _CROP_DESC.format("22-28"), partial(crop, lo=0.22, hi=0.28)),
    (
        "crop_rotate",
        "crop",
        "crop keeping 50-70 % of the area, then rotation by ±5-30° on an expanded canvas with black corners",
        _crop_rotate,
    ),
    ("crop_mirror", "crop", "crop keeping 50-70 % of the area, then horizontal flip", _crop_mirror),
    (
        "brightness_contrast",
        "colour",
        "contrast 0.6-0.9x or 1.1-1.5x about mid-grey, brightness shift ±0-40 grey levels",
        _brightness_contrast,
    ),
    ("saturation", "colour", "saturation 0.2-0.6x or 1.4-2.5x (blend with the grey image)", _saturation),
    ("hue", "colour", "hue rotated by ±15-60°", _hue),
    ("gamma", "colour", "gamma 0.6-0.9 or 1.1-1.6", _gamma),
    ("grayscale", "colour", "luma (BT.601) in three equal channels", _grayscale),
    ("blur", "filter", "Gaussian blur, sigma 1-2.5 px", _blur),
    ("noise", "filter", "additive Gaussian noise, sigma 5-15 grey levels, clipped", _noise),
    (
        "text_overlay",
        "overlay",
        "2-5 lines (more if too wide) of random words, random colour, font "
        "and position, some outlined; the text block covers about 10-25 % of the area",
        text_overlay,
    ),
    (
        "logo_overlay",
        "overlay",
        "semi-transparent (alpha 0.5-0.85) block with a filled shape "
        "and a word in a corner, 5-15 % of the area",
        logo_overlay,
    ),
    ("border", "overlay", "solid-colour padding of 5-25 % of the side on each side", border),
    (
        "screenshot",
        "overlay",
        "photo shrunk to 30-60 % of the width of a light web-like page "
        "with a header, grey text lines and boxes",
        screenshot,
    ),
    (
        "combo_strong",
        "combo",
        "crop 50-70 %, rotation ±0-10° (inscribed crop), brightness, "
        "contrast and saturation shift, text overlay 8-15 %, JPEG quality 35-45",
        _combo_strong,
    ),
    (
        "combo_mirror",
        "combo",
        "mirror, rescale 0.5-1.5x, brightness/contrast and gamma shift, logo overlay",
        _combo_mirror,
    ),
]

TRANSFORMS: dict[str, Transform] = {
    name: Transform(name, family, desc, fn, exact_copy=(name == "exact_copy"))
    for name, family, desc, fn in _TABLE
}
"""Every transform by name, in a stable order: identity, compression, geometry, rotate, crop,
colour, filter, overlay, combo."""


def get_transforms(names: Sequence[str] | None = None) -> list[Transform]:
    """Look up transforms by name.

    Parameters
    ----------
    names : sequence of str, optional
        Keys of :data:`TRANSFORMS`, in the order wanted. ``None`` gives all of them in registry
        order.

    Returns
    -------
    list of Transform

    Raises
    ------
    ConfigError
        If a name is unknown (the message lists the valid names), or ``names`` is a bare string.
    """
    if names is None:
        return list(TRANSFORMS.values())
    if isinstance(names, str):
        raise ConfigError(f"names must be a sequence of transform names, not the string {names!r}")
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise ConfigError(f"unknown transform name(s) {unknown}; valid names are: {', '.join(TRANSFORMS)}")
    return [TRANSFORMS[n] for n in names]


def apply_transform(name: str, image: np.ndarray, seed: int) -> np.ndarray:
    """Apply one named transform with ``rng = numpy.random.default_rng(seed)``.

    Parameters
    ----------
    name : str
        A key of :data:`TRANSFORMS`.
    image : (H, W, 3) uint8 array, RGB
        Both sides at least 16 px. Not modified.
    seed : int
        Seed of the generator; the same seed gives the same output.

    Returns
    -------
    (H', W', 3) uint8 array, RGB, C-contiguous

    Raises
    ------
    ConfigError
        If ``name`` is unknown or ``image`` is not a valid image.
    """
    (transform,) = get_transforms([name])
    return transform(image, np.random.default_rng(seed))
