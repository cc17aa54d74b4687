"""Tests of imgsearch.evaluate.transforms on the Kodak fixture photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from imgsearch.errors import ConfigError
from imgsearch.evaluate.transforms import (
    TRANSFORMS,
    Transform,
    apply_transform,
    get_transforms,
)

DATA = Path(__file__).resolve().parents[1] / "data"
NAMES = list(TRANSFORMS)
# Transforms without random parameters: the seed must not matter.
FIXED = {"exact_copy", "mirror", "vflip", "rot90", "rot180", "rot270", "grayscale"}


def _load(name: str) -> np.ndarray:
    bgr = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
    assert bgr is not None, f"missing fixture {name}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """(171, 256, 3) uint8 RGB, landscape."""
    return _load("0000.jpg")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """A fixture photo turned to portrait, so transforms see both orientations."""
    return np.ascontiguousarray(np.rot90(_load("0003.jpg")))


def _check_output(out: np.ndarray) -> None:
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3
    assert out.flags.c_contiguous
    assert min(out.shape[:2]) >= 16


# --------------------------------------------------------------------------- registry


def test_registry_is_consistent() -> None:
    families = {
        "identity",
        "compression",
        "geometry",
        "rotate",
        "crop",
        "colour",
        "filter",
        "overlay",
        "combo",
    }
    for name, t in TRANSFORMS.items():
        assert isinstance(t, Transform)
        assert t.name == name
        assert t.family in families
        assert t.description
        assert t.exact_copy == (name == "exact_copy")


def test_get_transforms_all_and_subset() -> None:
    assert [t.name for t in get_transforms()] == NAMES
    assert [t.name for t in get_transforms(["rot90", "jpeg"])] == ["rot90", "jpeg"]


def test_get_transforms_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="no_such_thing") as info:
        get_transforms(["jpeg", "no_such_thing"])
    for name in NAMES:
        assert name in str(info.value)


def test_get_transforms_rejects_bare_string() -> None:
    with pytest.raises(ConfigError, match="sequence"):
        get_transforms("jpeg")


def test_apply_transform_unknown_name() -> None:
    with pytest.raises(ConfigError, match="crop_25"):
        apply_transform("crop_99", np.zeros((32, 32, 3), np.uint8), seed=0)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((32, 32), np.uint8),
        np.zeros((32, 32, 4), np.uint8),
        np.zeros((32, 32, 3), np.float32),
        np.zeros((8, 32, 3), np.uint8),
    ],
    ids=["gray", "rgba", "float", "tiny"],
)
def test_bad_image_raises_config_error(bad: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        apply_transform("jpeg", bad, seed=0)


def test_bad_rng_raises_config_error(photo: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="Generator"):
        TRANSFORMS["jpeg"](photo, 3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- every transform


@pytest.mark.parametrize("name", NAMES)
def test_output_contract(name: str, photo: np.ndarray, portrait: np.ndarray) -> None:
    for image in (photo, portrait):
        before = image.copy()
        for seed in range(3):
            out = TRANSFORMS[name](image, np.random.default_rng(seed))
            _check_output(out)
            assert not np.shares_memory(out, image)
        np.testing.assert_array_equal(image, before)  # input untouched


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name: str, photo: np.ndarray) -> None:
    a = apply_transform(name, photo, seed=7)
    b = TRANSFORMS[name](photo, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(set(NAMES) - FIXED))
def test_seed_changes_randomised_output(name: str, photo: np.ndarray) -> None:
    # Some transforms draw an integer (JPEG quality), so two seeds may collide: ask that at
    # least one of several seeds gives a different result.
    ref = apply_transform(name, photo, seed=0)
    others = [apply_transform(name, photo, seed=s) for s in range(1, 6)]
    assert any(o.shape != ref.shape or not np.array_equal(o, ref) for o in others)


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_transforms_ignore_seed(name: str, photo: np.ndarray) -> None:
    np.testing.assert_array_equal(apply_transform(name, photo, 0), apply_transform(name, photo, 1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(16, 16), (16, 300), (300, 17)])
def test_tiny_and_elongated_inputs_keep_min_side(name: str, shape: tuple[int, int]) -> None:
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for seed in range(3):
        _check_output(apply_transform(name, image, seed))


# --------------------------------------------------------------------------- specific transforms


def test_exact_copy_is_identity(photo: np.ndarray) -> None:
    assert TRANSFORMS["exact_copy"].exact_copy
    np.testing.assert_array_equal(apply_transform("exact_copy", photo, 0), photo)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mirror", lambda im: im[:, ::-1]),
        ("vflip", lambda im: im[::-1]),
        ("rot90", lambda im: np.rot90(im)),  # counter-clockwise, like np.rot90
        ("rot180", lambda im: im[::-1, ::-1]),
        ("rot270", lambda im: np.rot90(im, -1)),
    ],
)
def test_exact_geometric_transforms(name: str, expected, photo: np.ndarray) -> None:
    out = apply_transform(name, photo, 0)
    np.testing.assert_array_equal(out, expected(photo))


def test_rot90_is_counter_clockwise(photo: np.ndarray) -> None:
    h, w = photo.shape[:2]
    out = apply_transform("rot90", photo, 0)
    assert out.shape[:2] == (w, h)
    # The top-right pixel of the original becomes the top-left one.
    np.testing.assert_array_equal(out[0, 0], photo[0, w - 1])
    np.testing.assert_array_equal(out, cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE))


@pytest.mark.parametrize(("name", "fraction"), [("crop_70", 0.70), ("crop_45", 0.45), ("crop_25", 0.25)])
def test_crop_area_fraction(name: str, fraction: float, photo: np.ndarray, portrait: np.ndarray) -> None:
    for image in (photo, portrait):
        h, w = image.shape[:2]
        for seed in range(10):
            out = apply_transform(name, image, seed)
            # The drawn fraction is within ±3 %; rounding of the sides adds well under 1 %.
            assert abs(out.shape[0] * out.shape[1] / (h * w) - fraction) <= 0.04
            assert out.shape[0] <= h and out.shape[1] <= w


def test_crop_is_a_window_of_the_original(photo: np.ndarray) -> None:
    out = apply_transform("crop_45", photo, 3)
    ch, cw = out.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(photo, (ch, cw, 3))[:, :, 0]
    assert np.any(np.all(windows == out, axis=(2, 3, 4)))


def test_grayscale_has_equal_channels(photo: np.ndarray) -> None:
    out = apply_transform("grayscale", photo, 0)
    assert out.shape == photo.shape
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 1])
    np.testing.assert_array_equal(out[:, :, 1], out[:, :, 2])


@pytest.mark.parametrize(("name", "lo", "hi"), [("rescale_down", 0.3, 0.7), ("rescale_up", 1.3, 2.0)])
def test_rescale_within_range(name: str, lo: float, hi: float, photo: np.ndarray) -> None:
    h, w = photo.shape[:2]
    for seed in range(10):
        out = apply_transform(name, photo, seed)
        sy, sx = out.shape[0] / h, out.shape[1] / w
        # Sides are rounded to whole pixels: allow one pixel of slack on each.
        assert lo - 1 / h <= sy <= hi + 1 / h
        assert lo - 1 / w <= sx <= hi + 1 / w
        assert abs(sy - sx) <= 1 / h + 1 / w  # uniform scale


def test_aspect_changes_one_axis(photo: np.ndarray) -> None:
    h, w = photo.shape[:2]
    for seed in range(10):
        oh, ow = apply_transform("aspect", photo, seed).shape[:2]
        assert (oh == h) != (ow == w)
        ratio = oh / h if ow == w else ow / w
        assert 0.7 - 1 / min(h, w) <= ratio <= 1.4 + 1 / min(h, w)


def test_border_is_bigger_with_uniform_colour(photo: np.ndarray) -> None:
    h, w = photo.shape[:2]
    for seed in range(5):
        out = apply_transform("border", photo, seed)
        oh, ow = out.shape[:2]
        assert oh >= h + 2 * round(0.05 * h) and ow >= w + 2 * round(0.05 * w)
        assert oh <= h + 2 * round(0.25 * h) and ow <= w + 2 * round(0.25 * w)
        colour = out[0, 0]
        ring = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
        assert np.all(ring == colour)
        # The photo sits inside, unchanged, somewhere within the border.
        mask = np.any(out != colour, axis=2)
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], photo)


def test_jpeg_changes_pixels_keeps_shape(photo: np.ndarray) -> None:
    out = apply_transform("jpeg", photo, 0)
    assert out.shape == photo.shape
    diff = np.abs(out.astype(int) - photo.astype(int))
    assert diff.max() > 0
    assert diff.mean() < 20  # recompression, not a different image


@pytest.mark.parametrize("name", ["rotate_small_crop", "rotate_any", "perspective"])
def test_warps_change_pixels_but_keep_content(name: str, photo: np.ndarray) -> None:
    # The median grey level survives a warp; filled corners are a minority of the pixels.
    out = apply_transform(name, photo, 2)
    assert out.shape != photo.shape or not np.array_equal(out, photo)
    assert abs(float(np.median(out)) - float(np.median(photo))) < 40


def test_rotate_small_crop_has_no_filled_corners(photo: np.ndarray) -> None:
    for seed in range(5):
        out = apply_transform("rotate_small_crop", photo, seed)
        corners = out[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert np.all(corners.astype(int).sum(axis=1) > 0)  # no black fill


def test_screenshot_embeds_a_smaller_photo(photo: np.ndarray) -> None:
    out = apply_transform("screenshot", photo, 0)
    assert out.shape[1] >= photo.shape[1]
    assert out.shape[0] * out.shape[1] > photo.shape[0] * photo.shape[1] * 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_caption_band_puts_dark_text_on_a_white_band_above_the_photo(photo: np.ndarray, seed: int) -> None:
    from imgsearch.evaluate.overlays import caption_band

    out = caption_band(photo, np.random.default_rng(seed))
    h, w = photo.shape[:2]
    band = out.shape[0] - h
    assert out.shape[1] == w and 0.18 <= band / out.shape[0] <= 0.28 + 1 / out.shape[0]
    np.testing.assert_array_equal(out[band:], photo)  # the photo below, untouched
    dark = out[:band].max(axis=2) < 128
    assert 0.01 < dark.mean() < 0.5  # some caption, mostly white
    assert (out[:band].std(axis=2) == 0).all()  # black on white: grey levels only
    np.testing.assert_array_equal(out, caption_band(photo, np.random.default_rng(seed)))  # seeded
