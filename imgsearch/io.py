"""Reading images: bytes from disk, decoding, EXIF orientation, fast reduced JPEG decode.

Every image leaves this module in one convention: ``(H, W, 3) uint8`` RGB, or ``(H, W) uint8``
luminance when ``gray=True``, with rows top to bottom as displayed (EXIF orientation applied).
Colour is converted here and nowhere else.

Normalisation applied by :func:`decode_image`:

* grayscale input becomes three equal channels (or stays single-channel with ``gray=True``);
* 16-bit samples are scaled to 8 bits (``round(v / 257)``), never clipped;
* an alpha channel is composited on white;
* CMYK JPEGs, palette PNGs, the first frame of a GIF, WebP, BMP and TIFF decode to RGB;
* HEIC/HEIF (pillow-heif, libheif) and AVIF (Pillow's own plugin, libavif): the primary image,
  10- and 12-bit samples scaled to 8 bits, turned and mirrored as displayed (HEIF's ``irot`` and
  ``imir`` boxes, which phones write in place of the EXIF orientation they also carry).

Anything unreadable raises :class:`~imgsearch.errors.ImageReadError` carrying the path and a reason
(:class:`~imgsearch.errors.UnsupportedImageError` for data in no format we read,
:class:`~imgsearch.errors.ImageTooLargeError` above a size limit).
Truncated JPEG and PNG files are refused on purpose, even though OpenCV would decode them partially
(grey lower half): such images must never be indexed.

Decoding costs what the decoder produces, not what the caller needs: only JPEG decodes at 1/2, 1/4
or 1/8 of its size (in the DCT domain); every other format decodes whole. A caller that needs
``min_side`` pixels (indexing, queries) therefore gets at most :data:`MAX_DECODE_PIXELS` decoded
pixels: a 492 KB PNG of 13000 x 13000 px cost a query 5.4 s and 1.6 GB; its header is now
refused in 5 µs (a query answers in 0.8 ms, most of it the file's digest). A caller asking for the full image (``min_side=None``) may decode up to :data:`MAX_PIXELS`.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import sys
import tempfile
from collections.abc import Iterator

import cv2
import numpy as np

from imgsearch._imageheader import Header, exif_orientation, parse_header, truncation
from imgsearch.errors import ImageReadError, ImageTooLargeError, UnsupportedImageError

__all__ = [
    "MAX_DECODE_PIXELS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "decode_image",
    "image_size",
    "read_bytes",
    "read_image",
    "resize_long_side",
    "rgb_to_gray",
]

#: Files larger than this many bytes are refused by :func:`read_bytes` (512 MiB).
MAX_FILE_BYTES = 512 * 1024**2
#: Images declaring more pixels than this are refused before decoding (Pillow's default, ~179 MP).
MAX_PIXELS = 178_956_970
#: When the caller needs only ``min_side`` pixels, a decode may produce at most this many: every
#: format but JPEG decodes at full size, so a PNG, WebP, HEIC... above it is refused before
#: decoding (a JPEG up to MAX_PIXELS decodes at 1/8, 2.8 MP). 50 MP admits a phone's largest
#: HEIF (8064 x 6048 = 48.8 MP) and 8K screenshots; a 49 MP PNG costs a query 1.5 s and 540 MB
#: (13000 x 13000: 5.4 s, 1.6 GB).
MAX_DECODE_PIXELS = 50_000_000

# JPEG DCT-domain reduction: (factor, colour flag, grayscale flag), largest factor first.
_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    (1, cv2.IMREAD_COLOR, cv2.IMREAD_GRAYSCALE),
)

_INTS = (np.dtype(np.uint8), np.dtype(np.uint16))
_EXIF_ORIENTATION = 0x0112

# Corrupt-data warnings from the codecs would otherwise go to stderr for every bad file; errors
# still surface as ImageReadError. (libpng can still print for malformed PNGs that pass the checks.)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _validate(
    *,
    min_side: object = None,
    gray: object = False,
    image: object = None,
    long_side: object = None,
    data: object = b"",
) -> None:
    """Check the arguments of the public functions; raise TypeError/ValueError naming the value."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    for name, value in (("min_side", min_side), ("long_side", long_side)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not isinstance(gray, bool):
        raise TypeError(f"gray must be a bool, got {type(gray).__name__} {gray!r}")
    if image is not None:
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
        if image.ndim not in (2, 3) or 0 in image.shape[:2]:
            raise ValueError(f"image must be (H, W) or (H, W, C) with H, W > 0, got {image.shape}")


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, refusing anything that cannot be an image.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.

    Returns
    -------
    bytes
        The file content, at least one byte and at most :data:`MAX_FILE_BYTES`.

    Raises
    ------
    ImageReadError
        Missing file, directory or other non-regular file, permission denied, empty file, or a
        file larger than :data:`MAX_FILE_BYTES`.
    """
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(path, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(path, "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageTooLargeError(
                path, f"file is {st.st_size:,} bytes, above MAX_FILE_BYTES = {MAX_FILE_BYTES:,}"
            )
        with open(path, "rb") as f:
            # Ask for the size stat gave (reading with a 512 MiB limit costs 3x more), then for
            # the rest in case the file grew since.
            data = f.read(st.st_size + 1)
            if len(data) > st.st_size:
                data += f.read(MAX_FILE_BYTES + 1 - len(data))
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot read file ({e.strerror or e})") from None
    if not data:
        raise ImageReadError(path, "empty file")
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLargeError(path, f"file is larger than MAX_FILE_BYTES = {MAX_FILE_BYTES:,}")
    return data


def image_size(data: bytes) -> tuple[int, int] | None:
    """Image size read from the header, without decoding pixels.

    Understands JPEG (SOF marker), PNG (IHDR), GIF (logical screen), BMP, WebP (VP8, VP8L, VP8X)
    and TIFF (first IFD).

    Parameters
    ----------
    data : bytes
        Encoded image, or at least its first kilobytes (a JPEG's SOF may follow large APP segments).

    Returns
    -------
    (width, height) : tuple of int, or None
        Size as stored, before EXIF orientation; ``None`` for an unknown format or a short header.
    """
    _validate(data=data)
    header = parse_header(bytes(data))
    if header is None or header.width is None or header.height is None:
        return None
    return header.width, header.height


def decode_image(
    data: bytes,
    *,
    path: str | os.PathLike[str] = "<bytes>",
    min_side: int | None = None,
    gray: bool = False,
) -> np.ndarray:
    """Decode an encoded image to RGB (or gray) uint8, EXIF orientation applied.

    Parameters
    ----------
    data : bytes
        Encoded image (JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF, AVIF, or anything else OpenCV
        decodes).
    path : str or os.PathLike, optional
        Used only in error messages.
    min_side : int, optional
        The caller needs the image only with its long side at least this many pixels. JPEGs are
        then decoded in the DCT domain at 1/2, 1/4 or 1/8 scale, the largest factor that keeps
        ``ceil(long_side / factor) >= min_side``. The result is not resized further: its long side
        is ``>= min_side`` unless the stored image is smaller. Other formats decode at full size,
        and only up to :data:`MAX_DECODE_PIXELS`.
    gray : bool, optional
        Return luminance instead of RGB.

    Returns
    -------
    image : (H, W, 3) uint8 array of RGB, or (H, W) uint8 array when ``gray=True``
        C-contiguous, rows top to bottom as displayed.

    Raises
    ------
    ImageReadError
        Empty data, a truncated JPEG or PNG, or damaged data; :class:`ImageTooLargeError` for a
        header declaring more than :data:`MAX_PIXELS` pixels (or, with ``min_side``, a decode
        that would produce more than :data:`MAX_DECODE_PIXELS`); :class:`UnsupportedImageError`
        for data in no format imgsearch reads.
    """
    _validate(data=data, min_side=min_side, gray=gray)
    data = bytes(data)
    if not data:
        raise ImageReadError(path, "empty file")
    header = parse_header(data)
    if header is not None and header.width is not None and header.height is not None:
        _check_pixels(path, header.width, header.height, "declares", header.format, min_side)
    reason = truncation(data, header) if header is not None else None
    if reason is not None:
        raise ImageReadError(path, reason)
    if header is not None and header.format in ("heif", "avif"):
        return _decode_heif(data, header.format, path, min_side, gray)

    buf = np.frombuffer(data, np.uint8)
    try:
        if header is not None and header.format == "jpeg":
            image = _decode_jpeg(buf, header, min_side, gray)
        else:
            image = _decode_other(buf, gray)
    except cv2.error as e:
        message = str(e).strip().splitlines()[-1][:200]
        if header is None:
            raise UnsupportedImageError(path, f"not a decodable image (unknown format; OpenCV: {message})") from None
        raise ImageReadError(path, f"not a decodable image (OpenCV: {message})") from None
    if image is None:
        if header is None:
            raise UnsupportedImageError(path, "not a decodable image (unknown format)")
        raise ImageReadError(path, f"not a decodable image (corrupt {header.format.upper()} data)")
    fmt = header.format if header is not None else None
    _check_pixels(path, image.shape[1], image.shape[0], "decodes to", fmt, min_side)
    return np.ascontiguousarray(image)


def read_image(
    path: str | os.PathLike[str], *, min_side: int | None = None, gray: bool = False
) -> np.ndarray:
    """Read and decode an image file: :func:`read_bytes` then :func:`decode_image`.

    Parameters
    ----------
    path : str or os.PathLike
        Image file.
    min_side : int, optional
        See :func:`decode_image`.
    gray : bool, optional
        Return luminance instead of RGB.

    Returns
    -------
    image : (H, W, 3) uint8 array of RGB, or (H, W) uint8 array when ``gray=True``

    Raises
    ------
    ImageReadError
        Whenever the file cannot be read or decoded; ``str(error)`` starts with the path.
    """
    _validate(min_side=min_side, gray=gray)
    return decode_image(read_bytes(path), path=path, min_side=min_side, gray=gray)


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Downscale so the long side equals ``long_side``, keeping the aspect ratio (INTER_AREA).

    Never upscales: an image whose long side is already ``<= long_side`` is returned as is (the
    same object, not a copy).

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        Any dtype OpenCV resizes (uint8, uint16, float32, ...).
    long_side : int
        Target length of the longer side, >= 1.

    Returns
    -------
    resized : (h, w) or (h, w, C) array, same dtype and number of dimensions as ``image``
        ``max(h, w) == long_side``; the short side is ``round(short * long_side / max(H, W))``,
        at least 1.
    """
    _validate(image=image, long_side=long_side)
    h, w = image.shape[:2]
    if max(h, w) <= long_side:
        return image
    scale = long_side / max(h, w)
    if w >= h:
        size = (int(long_side), max(1, round(h * scale)))
    else:
        size = (max(1, round(w * scale)), int(long_side))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized.reshape(size[1], size[0], *image.shape[2:])  # cv2 drops a trailing 1-channel


def _check_pixels(
    path: str | os.PathLike[str], width: int, height: int, verb: str, fmt: str | None, min_side: int | None
) -> None:
    """Refuse an image above :data:`MAX_PIXELS`, or above :data:`MAX_DECODE_PIXELS` when only
    ``min_side`` pixels are needed and ``fmt`` (None: unknown) decodes at full size."""
    pixels = width * height
    if pixels > MAX_PIXELS:
        raise ImageTooLargeError(
            path,
            f"image {verb} {width}x{height} = {pixels:,} pixels, above the limit MAX_PIXELS = {MAX_PIXELS:,}",
        )
    if min_side is not None and fmt != "jpeg" and pixels > MAX_DECODE_PIXELS:
        name = fmt.upper() if fmt else "this format"
        raise ImageTooLargeError(
            path,
            f"image {verb} {width}x{height} = {pixels:,} pixels, above the limit MAX_DECODE_PIXELS = "
            f"{MAX_DECODE_PIXELS:,} for {name}, which decodes only at full size (JPEG may have up "
            f"to MAX_PIXELS = {MAX_PIXELS:,})",
        )


def _decode_jpeg(buf: np.ndarray, header: Header, min_side: int | None, gray: bool) -> np.ndarray | None:
    """JPEG path: OpenCV applies EXIF orientation and CMYK conversion itself, also when reduced.

    ``None`` when OpenCV cannot decode the data (:func:`cv2.imdecode` returns ``None``)."""
    _, color_flag, gray_flag = _REDUCED[-1]
    if min_side is not None and header.width is not None and header.height is not None:
        long_side = max(header.width, header.height)
        _, color_flag, gray_flag = next(
            r for r in _REDUCED if math.ceil(long_side / r[0]) >= min_side or r[0] == 1
        )
    image = cv2.imdecode(buf, gray_flag if gray else color_flag)
    if image is None or gray:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_other(buf: np.ndarray, gray: bool) -> np.ndarray | None:
    """Non-JPEG path: decode unchanged (keeps alpha and 16 bits), then normalise ourselves."""
    orientation = 1
    image: np.ndarray | None
    if hasattr(cv2, "imdecodeWithMetadata"):  # OpenCV >= 4.12 returns the EXIF blob
        image, types, blobs = cv2.imdecodeWithMetadata(buf, cv2.IMREAD_UNCHANGED)
        for kind, blob in zip(types, blobs, strict=False):
            if kind == cv2.IMAGE_METADATA_EXIF:
                orientation = exif_orientation(np.asarray(blob, np.uint8).tobytes())
    else:  # older OpenCV: IMREAD_UNCHANGED ignores orientation, and we cannot read it
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0 or not (image.dtype.kind == "f" or image.dtype in _INTS):
        return None
    image = _to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = _composite_on_white(image)
    if image.ndim == 2:
        out = image if gray else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    else:
        out = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB)
    return _apply_orientation(out, orientation)


def _decode_heif(
    data: bytes, fmt: str, path: str | os.PathLike[str], min_side: int | None, gray: bool
) -> np.ndarray:
    """HEIF through pillow-heif, AVIF through Pillow's own plugin: the primary image, 8 bits,
    oriented as displayed, in this module's convention.

    libheif applies HEIF's ``irot``/``imir`` transforms itself (pillow-heif then hides the EXIF
    orientation, which HEIF readers must ignore); Pillow's AVIF plugin leaves the pixels as stored
    and reports those transforms as an EXIF orientation, which is applied here. The size is read
    before any pixel is decoded, so the pixel limits hold as for the other formats.
    """
    orientation = 1
    try:
        if fmt == "heif":
            import pillow_heif

            heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=True)
            width, height = heif.size
            _check_pixels(path, width, height, "declares", fmt, min_side)
            image = np.asarray(heif)
        else:
            from PIL import AvifImagePlugin, Image

            with Image.open(io.BytesIO(data), formats=[AvifImagePlugin.AvifImageFile.format]) as im:
                width, height = im.size
                _check_pixels(path, width, height, "declares", fmt, min_side)
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
                if im.mode not in ("L", "LA", "RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                image = np.asarray(im)
    except ImageReadError:
        raise
    except Exception as e:  # libheif and libavif raise their own errors (ValueError, OSError, RuntimeError)
        message = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise ImageReadError(path, f"not a decodable image ({fmt.upper()}: {message})") from None
    if image.ndim == 0 or image.size == 0 or image.dtype != np.uint8:
        raise ImageReadError(path, f"not a decodable image ({fmt.upper()}: {image.dtype} {image.shape})")
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = _composite_on_white(image)
    if image.ndim == 3 and gray:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    elif image.ndim == 2 and not gray:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    image = _apply_orientation(image, orientation if 1 <= orientation <= 8 else 1)
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:  # scale 0..65535 onto 0..255 with rounding
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    # float TIFF/EXR: assume 0..1
    return (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _composite_on_white(image: np.ndarray) -> np.ndarray:
    """(H, W, 2) gray+alpha or (H, W, 4) BGRA uint8 -> (H, W) or (H, W, 3) on a white background."""
    alpha = image[:, :, -1:].astype(np.uint16)
    color = image[:, :, :-1].astype(np.uint16)
    out = (color * alpha + 255 * (255 - alpha) + 127) // 255
    out = out.astype(np.uint8)
    return out[:, :, 0] if out.shape[2] == 1 else out


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so rows and columns are as displayed."""
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)  # transpose: orientation 5
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    return image


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """Luminance of an ``(H, W, 3)`` RGB uint8 array as ``(H, W)`` uint8 (ITU-R BT.601 weights).

    The same conversion OpenCV applies when decoding with ``gray=True``, so an array query and a
    file query of the same pixels hash alike.
    """
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


@contextlib.contextmanager
def codec_messages() -> Iterator[list[str]]:
    """Capture what the image codecs print while inside (libjpeg's ``Corrupt JPEG data: ...``,
    libpng's and OpenCV's warnings): the yielded list receives their lines at exit, so that a
    caller attaches them to the file they concern instead of letting them reach the terminal
    unnamed.

    It redirects file descriptor 2 for the duration: use it only where no other thread writes to
    stderr meanwhile (an extraction worker process, a single-threaded command).
    """
    lines: list[str] = []
    level = cv2.utils.logging.getLogLevel()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
            try:
                yield lines
            finally:
                cv2.utils.logging.setLogLevel(level)
                os.dup2(saved, 2)
                sink.seek(0)
                text = sink.read(64 * 1024).decode("utf-8", errors="replace")
                lines.extend(line.strip() for line in text.splitlines() if line.strip())
    finally:
        os.close(saved)
