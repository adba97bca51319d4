"""Recognise an image format from its first bytes and read the declared size and EXIF orientation without decoding.
The one place that parses image headers: decoding takes the Header read here.

This lets the service refuse a decompression bomb (a tiny file declaring 60000×60000 pixels) before
OpenCV allocates anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from app.errors import ColorizerError

READABLE = "JPEG, PNG, WebP, BMP or TIFF"
BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)  # OS/2 core, BITMAPINFOHEADER and its later versions
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")
HINTS = {
    "a HEIC/AVIF photo": "; export it as JPEG first (on an iPhone: Settings > Camera > Formats > Most Compatible)",
}


@dataclass(frozen=True)
class Header:
    format: str
    width: int  # as stored, before the orientation turns it
    height: int
    orientation: int = 1  # EXIF 1..8 (JPEG only); 1 = as stored

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and (len(data) < 18 or int.from_bytes(data[14:18], "little") in BMP_HEADER_SIZES):
        return "bmp"  # the DIB header size tells a bitmap from text that happens to start with "BM"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def describe_non_image(data: bytes) -> str:
    """A short human name for what an unrecognised upload looks like (never echoes its bytes)."""
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or b"<svg" in head:
        return "an SVG drawing"
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if head.startswith((b"{", b"[")):
        return "JSON or text"
    if data[:4] == b"PK\x03\x04":
        return "a zip archive"
    if data[:4] == b"GIF8":
        return "a GIF"
    if data[:5] == b"%PDF-":
        return "a PDF document"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "a HEIC/AVIF photo"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of no known image format"
    return "text"


def read_header(data: bytes) -> Header:
    """The format, declared size and orientation; raises ColorizerError for what we cannot read."""
    if not data:
        raise ColorizerError("empty_file", "the upload is empty (0 bytes); send an image file")
    fmt = sniff_format(data)
    if fmt is None:
        what = describe_non_image(data)
        raise ColorizerError(
            "unsupported_media_type", f"the upload looks like {what}, not a {READABLE} image{HINTS.get(what, '')}"
        )
    try:
        width, height = _SIZE_READERS[fmt](data)
    except (struct.error, LookupError, ValueError) as exc:  # LookupError: an index or a tag that is not there
        raise ColorizerError("undecodable_image", f"the {fmt.upper()} header is damaged or truncated") from exc
    if width <= 0 or height <= 0:
        raise ColorizerError("undecodable_image", f"the {fmt.upper()} declares an empty size {width}×{height}")
    return Header(fmt, width, height, exif_orientation(data) if fmt == "jpeg" else 1)


def checked_header(data: bytes, max_pixels: int) -> Header:
    """``read_header`` and the pixel limit: cheap, so it runs before any thread or memory is spent on the image."""
    header = read_header(data)
    check_pixels(header, max_pixels)
    return header


def check_pixels(header: Header, max_pixels: int) -> None:
    """413 for an image whose declared size is over the limit, before anything is allocated for it."""
    pixels = header.pixels
    if pixels > max_pixels:
        raise ColorizerError(
            "too_many_pixels",
            f"image is {header.width}×{header.height} = {pixels / 1e6:.1f} Mpx; "
            f"the limit is {max_pixels / 1e6:.1f} Mpx (COLORIZER_MAX_PIXELS)",
        )


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation tag (1..8) of a JPEG, or 1 when absent or unreadable."""
    i = 2
    try:
        while i + 4 < len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
                return _tiff_orientation(data[i + 10 : i + 2 + length])
            if marker == 0xDA:  # start of scan: no more metadata
                break
            i += 2 + length
    except (struct.error, IndexError):
        return 1
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    endian = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", tiff[4:8])
    (count,) = struct.unpack(endian + "H", tiff[offset : offset + 2])
    for k in range(count):
        entry = tiff[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, _, _, value = struct.unpack(endian + "HHIH", entry[:10])
        if tag == 0x0112:
            return value if 1 <= value <= 8 else 1
    return 1


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise ValueError("bad marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    raise ValueError("no SOF marker")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError("unknown WebP chunk")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sizes
        w, h = struct.unpack("<HH", data[18:22])
        return w, h
    w, h = struct.unpack("<ii", data[18:26])
    return w, abs(h)  # a negative height means rows stored top-down


def _tiff_size(data: bytes) -> tuple[int, int]:
    endian = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", data[4:8])
    (count,) = struct.unpack(endian + "H", data[offset : offset + 2])
    size: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, typ = struct.unpack(endian + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = "H" if typ == 3 else "I"
            size[tag] = struct.unpack(endian + fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
    if 256 not in size or 257 not in size:
        raise ValueError("no ImageWidth or ImageLength tag")
    return size[256], size[257]


_SIZE_READERS = {"png": _png_size, "jpeg": _jpeg_size, "webp": _webp_size, "bmp": _bmp_size, "tiff": _tiff_size}
