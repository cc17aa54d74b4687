"""Cheap image-header parsing: format, stored size and EXIF orientation, without decoding pixels.

Private to :mod:`imgsearch.io`. Every function takes raw bytes, never raises on malformed input and
returns ``None`` (or a neutral value) when it cannot tell. Sizes are as stored in the file, before
any EXIF orientation is applied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# JPEG start-of-frame markers that carry the frame size (C4 = DHT, C8 = JPG, CC = DAC are not frames).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length field: TEM, RST0-7 (SOI and EOI are handled explicitly).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Header:
    """What the first bytes of a file say.

    Attributes
    ----------
    format : str
        One of ``"jpeg"``, ``"png"``, ``"gif"``, ``"bmp"``, ``"webp"``, ``"tiff"``, ``"heif"``
        (HEIC and other HEIF images) or ``"avif"``; the last two carry no size here (their
        decoders read it, :mod:`imgsearch.io`).
    width, height : int or None
        Stored size in pixels (before EXIF orientation); ``None`` when the header is cut short.
    scan_start : int or None
        JPEG only: offset of the first start-of-scan marker, ``None`` if none was reached.
    """

    format: str
    width: int | None = None
    height: int | None = None
    scan_start: int | None = None


def parse_header(data: bytes) -> Header | None:
    """Identify the format of ``data`` and read its size; ``None`` for an unknown format."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            if data[12:16] != b"IHDR":
                return Header("png")
            return Header("png", *struct.unpack_from(">II", data, 16))
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return Header("gif", *struct.unpack_from("<HH", data, 6))
        if data[:2] == b"BM":
            return _bmp(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            size = _tiff_ifd0(data, (256, 257))
            return Header("tiff", size.get(256), size.get(257))
        if data[4:8] == b"ftyp":
            fmt = _isobmff_brand(data)
            return Header(fmt) if fmt else None
    except struct.error:  # header cut short inside a field
        fmt = _guess_format(data)
        return Header(fmt) if fmt else None
    return None


def _guess_format(data: bytes) -> str | None:
    for magic, fmt in (
        (b"\xff\xd8", "jpeg"),
        (b"\x89PNG", "png"),
        (b"GIF8", "gif"),
        (b"BM", "bmp"),
        (b"RIFF", "webp"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
    ):
        if data.startswith(magic):
            return fmt
    return None


# ISO base media file brands (ISO/IEC 23008-12 and the AV1 image format): the major brand or one
# of the compatible brands of the ``ftyp`` box names what the file holds. AVIF wins when both
# appear (an AVIF file lists ``mif1`` too); ``mif1``/``msf1`` alone are HEIF of an unnamed codec.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)


def _isobmff_brand(data: bytes) -> str | None:
    """``"avif"`` or ``"heif"`` from the ``ftyp`` box at the start of ``data``, else None."""
    (size,) = struct.unpack_from(">I", data, 0)
    end = min(len(data), size if size >= 16 else 16)
    brands = {data[8:12]} | {data[k : k + 4] for k in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    return None


def _jpeg(data: bytes) -> Header:
    """Walk the marker segments up to the first SOS, reading the frame size on the way."""
    width = height = None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break  # lost sync: not a marker where one must be
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xDA:
            return Header("jpeg", width, height, scan_start=i)
        if marker == 0xD9:
            break
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, i + 5)
            if height == 0:  # height defined later by a DNL marker: unknown here
                width = height = None
        i += 2 + length
    return Header("jpeg", width, height, scan_start=None)


def _bmp(data: bytes) -> Header:
    (dib_size,) = struct.unpack_from("<I", data, 14)
    if dib_size == 12:  # BITMAPCOREHEADER: unsigned 16-bit size
        width, height = struct.unpack_from("<HH", data, 18)
    else:  # BITMAPINFOHEADER and later: signed 32-bit, negative height means top-down rows
        width, height = struct.unpack_from("<ii", data, 18)
    return Header("bmp", abs(width), abs(height))


def _webp(data: bytes) -> Header:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return Header("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and data[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, 21)
        return Header("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        if len(data) < 30:
            raise struct.error("VP8X header cut short")
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return Header("webp", w, h)
    return Header("webp")


def _tiff_ifd0(data: bytes, tags: tuple[int, ...]) -> dict[int, int]:
    """Read the SHORT/LONG values of ``tags`` from the first IFD of a TIFF-structured blob."""
    order = "<" if data[:2] == b"II" else ">"
    (magic, offset) = struct.unpack_from(order + "HI", data, 2)
    if magic != 42:  # BigTIFF (43) and others are not parsed
        return {}
    (count,) = struct.unpack_from(order + "H", data, offset)
    found: dict[int, int] = {}
    for k in range(count):
        tag, typ, _n = struct.unpack_from(order + "HHI", data, offset + 2 + 12 * k)
        if tag in tags and typ in (3, 4):  # SHORT or LONG, value stored inline
            fmt = order + ("H" if typ == 3 else "I")
            (found[tag],) = struct.unpack_from(fmt, data, offset + 10 + 12 * k)
    return found


def exif_orientation(exif: bytes) -> int:
    """EXIF orientation (1-8) from a TIFF-structured EXIF blob; 1 when absent or malformed."""
    if exif[:6] == b"Exif\x00\x00":
        exif = exif[6:]
    if exif[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    try:
        value = _tiff_ifd0(exif, (_ORIENTATION_TAG,)).get(_ORIENTATION_TAG, 1)
    except struct.error:
        return 1
    return value if 1 <= value <= 8 else 1


def truncation(data: bytes, header: Header) -> str | None:
    """A reason such as ``"truncated JPEG"`` when the file visibly ends early, else ``None``.

    A JPEG must have an EOI marker (FFD9) after its first scan: entropy-coded data never contains
    FFD9, so a cut file has none, while data appended after EOI (motion photos) is accepted. A PNG
    must contain its IEND chunk; a WebP must be as long as its RIFF header says.
    """
    if header.format == "jpeg":
        if header.scan_start is None:
            return "truncated JPEG"
        # Look in the tail first, where EOI almost always is: a whole-file scan costs ~1 ms a MB.
        tail = max(header.scan_start, len(data) - 4096)
        if data.rfind(b"\xff\xd9", tail) < 0 and data.find(b"\xff\xd9", header.scan_start) < 0:
            return "truncated JPEG"
    elif header.format == "png":
        if data.rfind(b"IEND\xaeB`\x82") < 0:
            return "truncated PNG"
    elif header.format == "webp":
        (riff_size,) = struct.unpack_from("<I", data, 4)
        if riff_size + 8 > len(data):
            return "truncated WebP"
    return None
