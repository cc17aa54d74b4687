"""Phone formats: HEIC/HEIF (pillow-heif) and AVIF (Pillow's plugin) read like the others.

The files are made here at run time from the Kodak fixtures (no binary is committed): each must
decode to the picture a JPEG of the same pixels decodes to, within the codecs' own error, turned
as its orientation says, and go through ``build`` and ``query`` like a JPEG.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GLOBAL_ONLY, ORIENT, encode_jpeg, kodak_rgb
from typer.testing import CliRunner

from imgsearch import Index, hashing
from imgsearch.cli import app
from imgsearch.errors import ImageReadError, ImageTooLargeError
from imgsearch.io import decode_image, rgb_to_gray

pillow_heif = pytest.importorskip("pillow_heif")
Image = pytest.importorskip("PIL.Image")
if not pytest.importorskip("PIL.features").check("avif"):
    pytest.skip("this Pillow has no AVIF codec (wheels have it from 11.3)", allow_module_level=True)

# Tolerances, measured over the 24 fixtures at quality 90 against a JPEG at quality 95 (mean
# absolute difference in grey levels): RGB 1.68 (HEIC) and 1.59 (AVIF), both 4:2:0 chroma;
# luminance 0.52 and 1.08; pHash 0 bits. An oriented file against the plain one turned by numpy:
# 1.22 (pillow-heif stores the pixels turned, so they are encoded again), 0 (AVIF).
RGB_TOLERANCE = 3.0
GRAY_TOLERANCE = 2.0
HASH_BITS_TOLERANCE = 2
ORIENTED_TOLERANCE = 2.5
WRONG_ORIENTATION = 10.0  # the same photo turned another way differs by more than this (measured >= 25)


def heic(rgb: np.ndarray, orientation: int = 1, quality: int = 90) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(rgb)).save(buf, quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def avif(rgb: np.ndarray, orientation: int = 1, quality: int = 90) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "AVIF", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


ENCODERS = {"heic": heic, "avif": avif}
NAMES = {"heic": "HEIF", "avif": "AVIF"}  # as error messages name the container


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
@pytest.mark.parametrize("photo", [0, 3, 13])  # landscape, portrait, landscape
def test_decodes_to_the_picture_a_jpeg_of_it_decodes_to(fmt, photo):
    rgb = kodak_rgb(photo)
    data = ENCODERS[fmt](rgb)
    jpeg = decode_image(encode_jpeg(rgb, 95))
    image = decode_image(data)
    assert image.shape == rgb.shape and image.dtype == np.uint8 and image.flags.c_contiguous
    assert _mad(image, jpeg) <= RGB_TOLERANCE
    gray = decode_image(data, gray=True)
    assert gray.shape == rgb.shape[:2]
    assert _mad(gray, rgb_to_gray(jpeg)) <= GRAY_TOLERANCE
    bits = np.bitwise_count(np.bitwise_xor(hashing.phash(gray), hashing.phash(rgb_to_gray(jpeg)))).sum()
    assert bits <= HASH_BITS_TOLERANCE
    assert decode_image(data, min_side=64, gray=True).shape == gray.shape  # no reduced decode


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
@pytest.mark.parametrize("orientation", range(2, 9))
def test_orientation_is_applied(fmt, orientation):
    rgb = kodak_rgb(0)  # 256 x 171, landscape
    plain = decode_image(ENCODERS[fmt](rgb))
    image = decode_image(ENCODERS[fmt](rgb, orientation))
    expected = ORIENT[orientation](plain)
    assert image.shape == expected.shape
    assert _mad(image, expected) <= ORIENTED_TOLERANCE
    for other in (1, 3) if orientation in (2, 4) else (1,):
        wrong = ORIENT[other](plain)
        if wrong.shape == image.shape:
            assert _mad(image, wrong) > WRONG_ORIENTATION
    gray = decode_image(ENCODERS[fmt](rgb, orientation), gray=True)
    assert _mad(gray, rgb_to_gray(expected)) <= ORIENTED_TOLERANCE


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
def test_alpha_is_composited_on_white(fmt):
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[:, :24] = (0, 0, 255, 255)  # opaque blue left half, transparent right half
    buf = io.BytesIO()
    if fmt == "heic":
        pillow_heif.from_pillow(Image.fromarray(rgba, "RGBA")).save(buf, quality=-1)  # lossless
    else:
        Image.fromarray(rgba, "RGBA").save(buf, "AVIF", quality=100)
    image = decode_image(buf.getvalue())
    assert image.shape == (32, 48, 3)
    assert np.abs(image[8:24, 32:44].astype(int) - 255).max() <= 4  # white where transparent
    assert image[8:24, 4:16, 2].min() >= 200 and image[8:24, 4:16, 0].max() <= 60  # blue stays


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
def test_damaged_and_cut_files_are_refused(fmt):
    data = ENCODERS[fmt](kodak_rgb(1))
    with pytest.raises(ImageReadError, match=rf"^cut: not a decodable image \({NAMES[fmt]}: ") as info:
        decode_image(data[: len(data) // 2], path="cut")
    assert info.value.kind == "unreadable"  # a known format, damaged: 422 in the service


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
def test_pixel_limit_is_checked_before_decoding(fmt, monkeypatch):
    import imgsearch.io as imio

    data = ENCODERS[fmt](kodak_rgb(1))
    monkeypatch.setattr(imio, "MAX_DECODE_PIXELS", 1000)
    with pytest.raises(
        ImageTooLargeError, match=r"256x171 = 43,776 pixels, above the limit MAX_DECODE_PIXELS"
    ):
        decode_image(data, min_side=64)
    assert decode_image(data).shape == (171, 256, 3)  # the full image was asked for: MAX_PIXELS


def test_build_and_query_read_them(tmp_path: Path):
    """``imgsearch build`` indexes .heic and .avif files of a folder; ``query`` reads them too."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.heic").write_bytes(heic(kodak_rgb(4)))
    (folder / "b.avif").write_bytes(avif(kodak_rgb(5)))
    (folder / "c.heif").write_bytes(heic(kodak_rgb(6), orientation=6))
    Index.create(tmp_path / "ix", GLOBAL_ONLY).close()
    runner = CliRunner()
    built = runner.invoke(
        app, ["build", str(folder), "--index", str(tmp_path / "ix"), "--workers", "1", "-q"]
    )
    assert built.exit_code == 0, built.stderr
    assert "added 3" in built.stderr
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "4.jpg").write_bytes(encode_jpeg(kodak_rgb(4), 80))
    (queries / "5.heic").write_bytes(heic(kodak_rgb(5), quality=60))
    (queries / "6.avif").write_bytes(avif(np.ascontiguousarray(np.rot90(kodak_rgb(6), -1)), quality=60))
    args = ["query", *sorted(map(str, queries.iterdir())), "--index", str(tmp_path / "ix"), "--json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["matches"][0]["path"]).name for r in found] == ["a.heic", "b.avif", "c.heif"]
    assert all(r["matches"][0]["tier"] == "global" for r in found)


def test_ten_bit_and_monochrome_heic():
    """Phones' HDR photos are 10-bit HEIC: scaled to 8 bits (measured 0.95 from the source, 4:2:0);
    a monochrome HEIC becomes three equal channels (measured 0.04)."""
    rgb = kodak_rgb(0)
    deep = pillow_heif.from_bytes(
        mode="RGB;16", size=(256, 171), data=(rgb.astype(np.uint16) * 257).tobytes()
    )
    buf = io.BytesIO()
    deep.save(buf, quality=95)
    assert pillow_heif.open_heif(buf.getvalue(), convert_hdr_to_8bit=False).info["bit_depth"] == 10
    image = decode_image(buf.getvalue())
    assert image.dtype == np.uint8 and _mad(image, rgb) <= RGB_TOLERANCE
    gray = np.ascontiguousarray(rgb_to_gray(rgb))
    mono = pillow_heif.from_bytes(mode="L", size=(256, 171), data=gray.tobytes())
    buf = io.BytesIO()
    mono.save(buf, quality=95)
    image = decode_image(buf.getvalue())
    assert image.shape == (171, 256, 3) and (image[:, :, 0] == image[:, :, 2]).all()
    assert _mad(image[:, :, 0], gray) <= GRAY_TOLERANCE
