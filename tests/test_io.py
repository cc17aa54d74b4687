"""Tests of imgsearch.io: formats, colour convention, normalisation, reduced decode, EXIF, bad files."""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ORIENT

import imgsearch.io as imio
from imgsearch.errors import ImageReadError, ImageTooLargeError, UnsupportedImageError
from imgsearch.io import decode_image, image_size, read_bytes, read_image, resize_long_side

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "0000.jpg"  # 256 x 171 landscape


def _bgr() -> np.ndarray:
    return cv2.imread(str(FIXTURE), cv2.IMREAD_COLOR)


def _encode(image_bgr: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, image_bgr, list(params))
    assert ok
    return buf.tobytes()


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def _exif_blob(orientation: int) -> bytes:
    """A minimal big-endian TIFF-structured EXIF blob holding only the Orientation tag."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + b"\x00\x00\x00\x00"


def _jpeg_with_exif(jpeg: bytes, orientation: int) -> bytes:
    payload = b"Exif\x00\x00" + _exif_blob(orientation)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_exif(png: bytes, orientation: int) -> bytes:
    return png[:33] + _png_chunk(b"eXIf", _exif_blob(orientation)) + png[33:]  # after IHDR


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path



# --- formats and colour convention -------------------------------------------------------------

# (extension, encoder params, tolerance on mean abs diff vs the lossless PNG reference)
FORMATS = [
    (".png", (), 0.0),
    (".bmp", (), 0.0),
    (".tiff", (), 0.0),
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), 0.0),  # quality > 100 means lossless
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 90), 5.0),  # lossy VP8: measured ~2.5
    (".jpg", (cv2.IMWRITE_JPEG_QUALITY, 95), 3.0),  # measured ~1.3
    (".gif", (), 25.0),  # OpenCV's GIF encoder quantises to 256 colours: measured ~16
]


@pytest.mark.parametrize(("ext", "params", "tol"), FORMATS)
def test_every_format_decodes_to_same_size_and_pixels(tmp_path, ext, params, tol):
    bgr = _bgr()
    reference = decode_image(_encode(bgr, ".png"))
    path = _write(tmp_path, "img" + ext, _encode(bgr, ext, params))
    image = read_image(path)
    assert image.shape == (171, 256, 3)
    assert image.dtype == np.uint8
    assert image.flags.c_contiguous
    assert _mad(image, reference) <= tol
    assert image_size(path.read_bytes()) == (256, 171)


def test_png_reference_is_rgb_of_fixture():
    np.testing.assert_array_equal(decode_image(_encode(_bgr(), ".png")), _bgr()[:, :, ::-1])


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff"])
def test_pure_red_is_channel_0(ext):
    red_bgr = np.zeros((16, 24, 3), np.uint8)
    red_bgr[:, :, 2] = 255
    image = decode_image(_encode(red_bgr, ext))
    assert image.shape == (16, 24, 3)
    assert np.all(image[:, :, 0] >= 250)  # JPEG may be a few levels off
    assert np.all(image[:, :, 1:] <= 5)


def test_palette_png_and_gif_first_frame():
    pil = pytest.importorskip("PIL.Image")
    quantised = pil.fromarray(_bgr()[:, :, ::-1].copy()).quantize(64)  # exact in a palette
    expected = np.asarray(quantised.convert("RGB"))
    for fmt in ("PNG", "GIF"):
        buf = io.BytesIO()
        quantised.save(buf, fmt)
        np.testing.assert_array_equal(decode_image(buf.getvalue()), expected, err_msg=fmt)
    # animated GIF: the first frame is returned
    second = pil.fromarray(np.zeros((171, 256, 3), np.uint8)).quantize(2)
    buf = io.BytesIO()
    quantised.save(buf, "GIF", save_all=True, append_images=[second], duration=100)
    np.testing.assert_array_equal(decode_image(buf.getvalue()), expected)


def test_cmyk_jpeg_decodes_to_rgb():
    pil = pytest.importorskip("PIL.Image")
    rgb = _bgr()[:, :, ::-1].copy()
    buf = io.BytesIO()
    pil.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=95)
    image = decode_image(buf.getvalue())
    assert image.shape == (171, 256, 3)
    assert _mad(image, rgb) < 10.0  # JPEG loss plus naive CMYK round trip: measured ~4.7
    assert decode_image(buf.getvalue(), gray=True, min_side=100).shape == (86, 128)


# --- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_grayscale_input_gives_three_equal_channels_or_2d(ext):
    gray = cv2.cvtColor(_bgr(), cv2.COLOR_BGR2GRAY)
    data = _encode(gray, ext)
    image = decode_image(data)
    assert image.shape == (171, 256, 3)
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 1])
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 2])
    flat = decode_image(data, gray=True)
    assert flat.shape == (171, 256)
    np.testing.assert_array_equal(flat, image[:, :, 0])


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_gray_output_from_colour_is_luminance(ext):
    bgr = _bgr()
    flat = decode_image(_encode(bgr, ext), gray=True)
    assert flat.shape == (171, 256)
    assert flat.dtype == np.uint8
    assert _mad(flat, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)) < 2.0


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16_bit_is_scaled_not_clipped(ext):
    rng = np.random.default_rng(16)
    values = rng.integers(0, 256, size=(20, 30, 3)).astype(np.uint16)
    wide = values * 257  # 0..255 mapped onto 0..65535 exactly
    wide[0, 0] = (65535, 0, 32896)  # 32896 / 257 = 128.0
    image = decode_image(_encode(wide, ext))
    assert image.dtype == np.uint8
    expected = values[:, :, ::-1].astype(np.uint8)
    expected[0, 0] = (128, 0, 255)
    np.testing.assert_array_equal(image, expected)
    gray16 = np.full((5, 7), 65535, np.uint16)
    np.testing.assert_array_equal(decode_image(_encode(gray16, ".png")), 255)


@pytest.mark.parametrize(("ext", "params"), [(".png", ()), (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))])
def test_alpha_is_composited_on_white(ext, params):
    bgra = np.zeros((10, 12, 4), np.uint8)
    bgra[:, :, 2] = 255  # red
    bgra[:, :4, 3] = 0  # transparent -> white
    bgra[:, 4:8, 3] = 255  # opaque -> red
    bgra[:, 8:, 3] = 128  # half -> pink
    image = decode_image(_encode(bgra, ext, params))
    assert image.shape == (10, 12, 3)
    np.testing.assert_array_equal(image[:, :4], 255)
    np.testing.assert_array_equal(image[:, 4:8], np.broadcast_to([255, 0, 0], (10, 4, 3)))
    np.testing.assert_array_equal(image[:, 8:], np.broadcast_to([255, 127, 127], (10, 4, 3)))
    np.testing.assert_array_equal(decode_image(_encode(bgra, ext, params), gray=True)[:, :4], 255)


def test_gray_alpha_png_is_composited():
    pil = pytest.importorskip("PIL.Image")
    la = np.zeros((6, 8, 2), np.uint8)
    la[:, :, 0] = 100
    la[:, :4, 1] = 0
    la[:, 4:, 1] = 255
    buf = io.BytesIO()
    pil.fromarray(la, "LA").save(buf, "PNG")
    image = decode_image(buf.getvalue())
    np.testing.assert_array_equal(image[:, :4], 255)
    np.testing.assert_array_equal(image[:, 4:], 100)


# --- reduced JPEG decode -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    big = cv2.resize(_bgr(), (2000, 1333), interpolation=cv2.INTER_CUBIC)
    return _encode(big, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 90))


@pytest.mark.parametrize(
    ("min_side", "factor"),
    [
        (None, 1),
        (100, 8),
        (210, 8),  # ceil(2000 / 8) = 250 >= 210 already
        (250, 8),
        (251, 4),  # 500 x 334
        (500, 4),
        (501, 2),
        (1000, 2),
        (1001, 1),
        (5000, 1),  # never upscaled: the stored size is the most there is
    ],
)
def test_reduced_decode_picks_largest_sufficient_factor(big_jpeg, min_side, factor):
    image = decode_image(big_jpeg, min_side=min_side)
    assert image.shape == (math.ceil(1333 / factor), math.ceil(2000 / factor), 3)
    if min_side is not None:
        assert max(image.shape) >= min(min_side, 2000)
    flat = decode_image(big_jpeg, min_side=min_side, gray=True)
    assert flat.shape == image.shape[:2]


def test_reduced_decode_matches_full_decode_resized(big_jpeg):
    reduced = decode_image(big_jpeg, min_side=300)
    full = decode_image(big_jpeg)
    resized = cv2.resize(full, (reduced.shape[1], reduced.shape[0]), interpolation=cv2.INTER_AREA)
    assert _mad(reduced, resized) < 3.0  # DCT-domain scaling vs area averaging: measured < 1


def test_min_side_ignored_for_other_formats():
    data = _encode(cv2.resize(_bgr(), (1024, 684)), ".png")
    assert decode_image(data, min_side=100).shape == (684, 1024, 3)


# --- EXIF orientation --------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(orientation):
    plain = _encode(_bgr(), ".jpg")
    data = _jpeg_with_exif(plain, orientation)
    expected = ORIENT[orientation](decode_image(plain))
    np.testing.assert_array_equal(decode_image(data), expected)
    np.testing.assert_array_equal(
        decode_image(data, gray=True), ORIENT[orientation](decode_image(plain, gray=True))
    )
    # the reduced decode applies it too
    reduced = decode_image(data, min_side=100)
    np.testing.assert_array_equal(reduced, ORIENT[orientation](decode_image(plain, min_side=100)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_agrees_with_opencv(orientation):
    plain = _encode(_bgr(), ".png")
    data = _png_with_exif(plain, orientation)
    image = decode_image(data)
    np.testing.assert_array_equal(image, ORIENT[orientation](decode_image(plain)))
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(image, opencv)


@pytest.mark.parametrize("orientation", [3, 6, 7, 8])
@pytest.mark.parametrize(("fmt", "options"), [("TIFF", {}), ("WEBP", {"lossless": True})])
def test_exif_orientation_tiff_and_webp(fmt, options, orientation):
    pil = pytest.importorskip("PIL.Image")
    rgb = _bgr()[:, :, ::-1].copy()
    buf = io.BytesIO()
    pil.fromarray(rgb).save(buf, fmt, exif=b"Exif\x00\x00" + _exif_blob(orientation), **options)
    np.testing.assert_array_equal(decode_image(buf.getvalue()), ORIENT[orientation](rgb))


def test_exif_orientation_6_is_portrait():
    data = _jpeg_with_exif(_encode(_bgr(), ".jpg"), 6)
    assert decode_image(data).shape == (256, 171, 3)
    assert image_size(data) == (256, 171)  # header size is as stored


# --- bad files ---------------------------------------------------------------------------------


def _bomb_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _make_bad(tmp_path: Path, kind: str) -> Path:
    jpeg = FIXTURE.read_bytes()
    png = _encode(_bgr(), ".png")
    makers = {
        "empty": lambda: _write(tmp_path, "empty.jpg", b""),
        "truncated_jpeg": lambda: _write(tmp_path, "half.jpg", jpeg[: len(jpeg) // 2]),
        "jpeg_without_eoi": lambda: _write(tmp_path, "noeoi.jpg", jpeg[:-2]),
        "truncated_png": lambda: _write(tmp_path, "cut.png", png[: len(png) * 3 // 5]),
        "random": lambda: _write(tmp_path, "noise.jpg", np.random.default_rng(7).bytes(4096)),
        "text": lambda: _write(tmp_path, "notes.jpg", b"hello, this is not an image\n" * 20),
        "jpeg_header_only": lambda: _write(tmp_path, "hdr.jpg", jpeg[:300]),
        "bomb": lambda: _write(tmp_path, "bomb.png", _bomb_png()),
        "directory": lambda: (tmp_path / "folder.jpg").mkdir() or tmp_path / "folder.jpg",
        "missing": lambda: tmp_path / "missing.jpg",
    }
    return makers[kind]()


BAD = [
    ("empty", "empty file"),
    ("truncated_jpeg", "truncated JPEG"),
    ("jpeg_without_eoi", "truncated JPEG"),
    ("truncated_png", "truncated PNG"),
    ("random", "not a decodable image"),
    ("text", "not a decodable image"),
    ("jpeg_header_only", "truncated JPEG"),
    ("bomb", "10,000,000,000 pixels, above the limit MAX_PIXELS = 178,956,970"),
    ("directory", "is a directory"),
    ("missing", "no such file"),
]


@pytest.mark.parametrize(("kind", "reason"), BAD)
def test_bad_files_raise_image_read_error(tmp_path, capfd, kind, reason):
    path = _make_bad(tmp_path, kind)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert reason in str(info.value)
    assert info.value.path == str(path)
    assert capfd.readouterr().err == ""  # OpenCV prints nothing for bad files


@pytest.mark.parametrize(("kind", "reason"), [b for b in BAD if b[0] not in ("directory", "missing")])
def test_bad_bytes_name_the_given_path(tmp_path, kind, reason):
    data = _make_bad(tmp_path, kind).read_bytes()
    with pytest.raises(ImageReadError, match=re.escape(reason)):
        decode_image(data, path="photos/x.jpg")
    with pytest.raises(ImageReadError, match=r"^<bytes>: "):
        decode_image(data)


def test_bomb_is_refused_before_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoder must not be called")

    monkeypatch.setattr(cv2, "imdecode", fail)
    monkeypatch.setattr(cv2, "imdecodeWithMetadata", fail, raising=False)
    with pytest.raises(ImageReadError, match="MAX_PIXELS"):
        decode_image(_bomb_png())
    assert image_size(_bomb_png()) == (100_000, 100_000)


def test_pixel_limit_is_checked_after_decoding_when_header_unknown(monkeypatch):
    data = _encode(_bgr(), ".ppm")  # a format the header parser does not read
    assert image_size(data) is None
    assert decode_image(data).shape == (171, 256, 3)
    monkeypatch.setattr(imio, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match=r"decodes to 256x171 = 43,776 pixels"):
        decode_image(data)


def _declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` RGB pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")


def test_full_size_decodes_are_bounded_when_little_is_needed(monkeypatch):
    """Issue 12: a PNG of 13000 x 13000 px (169 MP, under MAX_PIXELS) cost a query 5.4 s and 1.6 GB
    decoding at full size to be searched at 180-270 px. With ``min_side``, a format that decodes
    only at full size is refused above MAX_DECODE_PIXELS, before any pixel is decoded."""

    def fail(*args, **kwargs):
        raise AssertionError("decoder must not be called")

    monkeypatch.setattr(cv2, "imdecode", fail)
    monkeypatch.setattr(cv2, "imdecodeWithMetadata", fail, raising=False)
    data = _declared_png(13000, 13000)
    with pytest.raises(ImageTooLargeError, match=r"13000x13000 = 169,000,000 pixels, above the limit MAX_DECODE_PIXELS = 50,000,000 for PNG") as info:
        decode_image(data, min_side=210, gray=True)
    assert info.value.kind == "too large"
    with pytest.raises(AssertionError, match="decoder must not be called"):
        decode_image(data)  # the full image asked for: up to MAX_PIXELS, decoded


def test_decode_bound_spares_jpeg_and_full_decodes(monkeypatch):
    monkeypatch.setattr(imio, "MAX_DECODE_PIXELS", 1000)
    jpeg, png = FIXTURE.read_bytes(), _encode(_bgr(), ".png")
    assert decode_image(jpeg, min_side=16).shape == (22, 32, 3)  # 1/8: 704 pixels decoded
    assert decode_image(jpeg, min_side=200).shape == (171, 256, 3)  # JPEGs: MAX_PIXELS only
    assert decode_image(png).shape == (171, 256, 3)
    with pytest.raises(ImageTooLargeError, match=r"declares 256x171 = 43,776 pixels.*MAX_DECODE_PIXELS = 1,000 for PNG"):
        decode_image(png, min_side=16)
    ppm = _encode(_bgr(), ".ppm")  # no header we read: checked once decoded
    with pytest.raises(ImageTooLargeError, match=r"decodes to 256x171 = 43,776 pixels.*for this format"):
        decode_image(ppm, min_side=16)


@pytest.mark.parametrize(
    ("kind", "error"),
    [("bomb", ImageTooLargeError), ("random", UnsupportedImageError), ("text", UnsupportedImageError),
     ("truncated_jpeg", ImageReadError), ("truncated_png", ImageReadError), ("empty", ImageReadError)],
)  # fmt: skip
def test_error_kinds(tmp_path, kind, error):
    """The kind says what the service answers: 413 too large, 415 unsupported, 422 unreadable."""
    with pytest.raises(ImageReadError) as info:
        decode_image(_make_bad(tmp_path, kind).read_bytes())
    assert type(info.value) is error
    assert info.value.kind == {ImageTooLargeError: "too large", UnsupportedImageError: "unsupported"}.get(error, "unreadable")


def test_jpeg_with_trailing_data_is_accepted():
    data = FIXTURE.read_bytes() + b"\x00" * 100 + b"appended video"
    assert decode_image(data).shape == (171, 256, 3)


def test_file_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(imio, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ImageTooLargeError, match="above MAX_FILE_BYTES = 1,000"):
        read_bytes(FIXTURE)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied(tmp_path):
    path = _write(tmp_path, "secret.jpg", FIXTURE.read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(ImageReadError, match="permission denied"):
            read_bytes(path)
    finally:
        path.chmod(0o600)


def test_read_bytes_roundtrip():
    assert read_bytes(FIXTURE) == FIXTURE.read_bytes()
    assert read_bytes(str(FIXTURE)) == FIXTURE.read_bytes()


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.jpg")))
def test_all_fixtures_read(name):
    image = read_image(DATA / name)
    assert max(image.shape[:2]) == 256
    assert image.shape[2] == 3


# --- image_size --------------------------------------------------------------------------------


def test_image_size_formats():
    bgr = _bgr()
    for ext, params in [
        (".jpg", ()),
        (".png", ()),
        (".bmp", ()),
        (".tiff", ()),
        (".gif", ()),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
    ]:
        assert image_size(_encode(bgr, ext, params)) == (256, 171), ext
    assert image_size(b"") is None
    assert image_size(b"not an image at all") is None
    assert image_size(FIXTURE.read_bytes()[:20]) is None  # JPEG cut before its SOF
    assert image_size(_encode(bgr, ".png")[:18]) is None  # PNG cut inside IHDR


def test_image_size_webp_vp8x():
    pil = pytest.importorskip("PIL.Image")
    rgba = np.zeros((171, 256, 4), np.uint8)
    buf = io.BytesIO()
    pil.fromarray(rgba, "RGBA").save(buf, "WEBP", exif=b"Exif\x00\x00" + _exif_blob(1))
    assert buf.getvalue()[12:16] == b"VP8X"
    assert image_size(buf.getvalue()) == (256, 171)


# --- resize_long_side --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "long_side", "expected"),
    [
        ((171, 256, 3), 128, (86, 128, 3)),  # landscape: 171 * 0.5 = 85.5 -> 86
        ((256, 171, 3), 100, (100, 67, 3)),  # portrait
        ((171, 256), 64, (43, 64)),  # gray stays 2-D
        ((171, 256, 1), 64, (43, 64, 1)),  # a trailing single channel is kept
        ((200, 200, 4), 50, (50, 50, 4)),
        ((1000, 3), 10, (10, 1)),  # short side never rounds to 0
    ],
)
def test_resize_long_side_shapes(shape, long_side, expected):
    image = np.random.default_rng(3).integers(0, 256, size=shape).astype(np.uint8)
    resized = resize_long_side(image, long_side)
    assert resized.shape == expected
    assert resized.dtype == np.uint8


def test_resize_long_side_never_upscales():
    image = _bgr()
    assert resize_long_side(image, 256) is image
    assert resize_long_side(image, 1000) is image


def test_resize_long_side_averages():
    image = np.zeros((4, 8), np.uint8)
    image[:, ::2] = 200
    np.testing.assert_array_equal(resize_long_side(image, 4), np.full((2, 4), 100))


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: resize_long_side(np.zeros((4, 4)), 0), ValueError),
        (lambda: resize_long_side(np.zeros((4, 4)), 2.5), TypeError),
        (lambda: resize_long_side(np.zeros(4), 2), ValueError),
        (lambda: resize_long_side([[1, 2]], 2), TypeError),
        (lambda: decode_image(FIXTURE.read_bytes(), min_side=0), ValueError),
        (lambda: decode_image(FIXTURE.read_bytes(), gray=1), TypeError),
        (lambda: decode_image(str(FIXTURE)), TypeError),
        (lambda: read_image(FIXTURE, min_side=True), TypeError),
    ],
)
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call()
