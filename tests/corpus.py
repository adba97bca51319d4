"""Hostile and awkward uploads, made by code (no opaque checked-in blobs).

Every case says what the service must do with it: ``ACCEPTED`` cases come back as a colour image of the size a
viewer would show (EXIF orientation applied) with their alpha kept; ``REJECTED`` cases get the documented 4xx JSON
``{"detail", "code"}``. docs/RELIABILITY.md has one table row per case, with the reason for the decision; a test
keeps the two in step. The scenes are small so the whole corpus runs in seconds.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from PIL import Image

from tests.conftest import photo_like

H, W = 48, 64  # small and not square, so a rotation shows in the output's shape


@dataclass(frozen=True)
class Accepted:
    name: str
    build: Callable[[], bytes]
    view: Callable[[], np.ndarray]  # what a viewer shows: uint8 gray or BGR, orientation applied
    alpha: Callable[[], np.ndarray] | None = None  # the uint8 alpha that must come back unchanged
    tolerance: float = 2.5  # median |L difference| allowed between the output and the view (lossy formats)


@dataclass(frozen=True)
class Rejected:
    name: str
    build: Callable[[], bytes]
    status: int
    code: str


# ---- sources ------------------------------------------------------------------------------------------------


@cache
def scene() -> np.ndarray:
    """(H, W, 3) uint8 BGR."""
    return photo_like(H, W)


@cache
def gray() -> np.ndarray:
    return cv2.cvtColor(scene(), cv2.COLOR_BGR2GRAY)


@cache
def alpha_mask() -> np.ndarray:
    """Transparent on the left, half-transparent in the middle, opaque on the right."""
    mask = np.full((H, W), 255, np.uint8)
    mask[:, : W // 3] = 0
    mask[:, W // 3 : 2 * W // 3] = 128
    return mask


def cv_encode(ext: str, img: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok, f"OpenCV cannot write {ext}"
    return buf.tobytes()


def pil_encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[:, :, ::-1])


# ---- awkward but valid ----------------------------------------------------------------------------------------


def bgra_png() -> bytes:
    return cv_encode(".png", np.dstack([scene(), alpha_mask()]))


def gray_alpha_png() -> bytes:
    return pil_encode(Image.fromarray(np.dstack([gray(), alpha_mask()]), "LA"), "PNG")


def low_byte(shape: tuple[int, ...]) -> np.ndarray:
    """128..255, varying from pixel to pixel: a 16-bit sample's low byte that differs from its high byte."""
    index = np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
    return (128 + (index * 37 + index // 7) % 128).astype(np.uint16)


@cache
def gray16() -> np.ndarray:
    """16-bit gray whose low byte matters: a darkish scene (high byte 20..115) with low bytes of 128..255, so
    every sample is 0.05..0.9 of an 8-bit step above its high byte. A decoder that kept only the high byte (or
    swapped the bytes) reads a different, darker picture; v × 257 would hide both, its two bytes being equal."""
    return (gray().astype(np.uint16) // 2 << 8) | low_byte(gray().shape)


@cache
def bgr16() -> np.ndarray:
    return (scene().astype(np.uint16) // 2 << 8) | low_byte(scene().shape)


def as_8bit(img16: np.ndarray) -> np.ndarray:
    """What a viewer shows of a 16-bit image on an 8-bit screen."""
    return np.rint(img16 / 257).astype(np.uint8)


def float_tiff() -> bytes:
    """32-bit float samples in [0, 1] (scanner and HDR software write these)."""
    return pil_encode(Image.fromarray(gray().astype(np.float32) / 255, "F"), "TIFF")


def cmyk_jpeg() -> bytes:
    """Print workflows write CMYK JPEGs; Pillow writes them as Adobe (inverted) CMYK, like Photoshop."""
    return pil_encode(Image.fromarray(rgb(scene())).convert("CMYK"), "JPEG", quality=95)


def exif_jpeg(orientation: int, img: np.ndarray | None = None) -> bytes:
    """A JPEG stored sideways with an EXIF Orientation tag, as phones write them."""
    jpeg = cv_encode(".jpg", gray() if img is None else img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    ifd = b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01"
    ifd += bytes([0, orientation, 0, 0]) + b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + ifd
    return jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]


def rotated_view() -> np.ndarray:
    """The stored pixels of ``exif_jpeg(6)`` are ``gray()``; a viewer turns them 90° clockwise."""
    return cv2.rotate(gray(), cv2.ROTATE_90_CLOCKWISE)


def top_down_bmp() -> bytes:
    """A BMP with a negative height: rows stored top to bottom (Windows writes these)."""
    data = bytearray(cv_encode(".bmp", scene()))
    offset = struct.unpack("<I", data[10:14])[0]
    stride = (W * 3 + 3) & ~3
    rows = [bytes(data[offset + r * stride : offset + (r + 1) * stride]) for r in range(H)]
    data[22:26] = struct.pack("<i", -H)
    data[offset:] = b"".join(reversed(rows))
    return bytes(data)


def os2_bmp() -> bytes:
    """A gray picture in a BMP with the 12-byte OS/2 core header (16-bit width and height), 24-bit, bottom-up.

    Gray, because OpenCV reads every OS/2 bitmap as gray; for a gray photo that loses nothing.
    """
    stride = (W * 3 + 3) & ~3
    bgr = cv2.cvtColor(gray(), cv2.COLOR_GRAY2BGR)
    pixels = b"".join(bgr[r].tobytes().ljust(stride, b"\0") for r in reversed(range(H)))
    header = struct.pack("<IHHHH", 12, W, H, 1, 24)
    size = 14 + len(header) + len(pixels)
    return b"BM" + struct.pack("<IHHI", size, 0, 0, 14 + len(header)) + header + pixels


def png_with_trailing_html() -> bytes:
    """A valid PNG with a script appended (a polyglot): decoders stop at IEND, and the output is re-encoded."""
    return cv_encode(".png", gray()) + b"<html><script>alert(1)</script></html>"


def one_by_one(ext: str) -> Callable[[], bytes]:
    return lambda: cv_encode(ext, np.full((1, 1), 90, np.uint8))


ACCEPTED: list[Accepted] = [
    Accepted("gray_png", lambda: cv_encode(".png", gray()), gray),
    Accepted("bgr_png", lambda: cv_encode(".png", scene()), scene),
    Accepted("bgra_png", bgra_png, scene, alpha_mask),
    Accepted("gray_alpha_png", gray_alpha_png, gray, alpha_mask),
    Accepted("palette_png", lambda: pil_encode(Image.fromarray(gray()).convert("P"), "PNG"), gray),
    Accepted("gray16_png", lambda: cv_encode(".png", gray16()), lambda: as_8bit(gray16())),
    Accepted("bgr16_png", lambda: cv_encode(".png", bgr16()), lambda: as_8bit(bgr16())),
    Accepted("bgr16_tiff", lambda: cv_encode(".tiff", bgr16()), lambda: as_8bit(bgr16())),
    Accepted("float32_tiff", float_tiff, gray),
    Accepted("lzw_gray_tiff", lambda: pil_encode(Image.fromarray(gray()), "TIFF", compression="tiff_lzw"), gray),
    Accepted("gray_jpeg", lambda: cv_encode(".jpg", gray(), [cv2.IMWRITE_JPEG_QUALITY, 95]), gray),
    Accepted("cmyk_jpeg", cmyk_jpeg, scene, tolerance=4.0),
    Accepted(
        "progressive_jpeg",
        lambda: cv_encode(".jpg", scene(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 95]),
        scene,
    ),
    Accepted("exif_rotated_jpeg", lambda: exif_jpeg(6), rotated_view),
    Accepted("bmp", lambda: cv_encode(".bmp", scene()), scene),
    Accepted("top_down_bmp", top_down_bmp, scene),
    Accepted("os2_bmp", os2_bmp, gray),
    Accepted("webp_lossy", lambda: cv_encode(".webp", scene(), [cv2.IMWRITE_WEBP_QUALITY, 95]), scene, tolerance=4.0),
    Accepted("webp_lossless_gray", lambda: pil_encode(Image.fromarray(gray()), "WEBP", lossless=True), gray),
    Accepted(
        "webp_alpha",
        lambda: pil_encode(Image.fromarray(np.dstack([rgb(scene()), alpha_mask()]), "RGBA"), "WEBP", lossless=True),
        scene,
        alpha_mask,
    ),
    Accepted("png_with_trailing_html", png_with_trailing_html, gray),
    Accepted("one_by_one_png", one_by_one(".png"), lambda: np.full((1, 1), 90, np.uint8)),
    Accepted("one_by_one_jpeg", one_by_one(".jpg"), lambda: np.full((1, 1), 90, np.uint8)),
    Accepted("one_by_one_webp", one_by_one(".webp"), lambda: np.full((1, 1), 90, np.uint8), tolerance=4.0),
]


# ---- not images, broken images, and bombs ---------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG header (and one tiny IDAT) declaring any size: a decompression bomb when large."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def jpeg_declaring(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 declaring any size, and nothing else."""
    sof = b"\xff\xc0\x00\x0b\x08" + struct.pack(">HH", height, width) + b"\x01\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


def webp_declaring(width: int, height: int) -> bytes:
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_declaring(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def tiff_with(entries: list[tuple[int, int, int]]) -> bytes:
    """A little-endian TIFF whose first IFD holds (tag, type, value) entries and no pixel data."""
    ifd = struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        ifd += struct.pack("<HHII", tag, typ, 1, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00"


def zip_of_png() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photo.png", cv_encode(".png", gray()))
    return out.getvalue()


def random_bytes() -> bytes:
    data = np.random.default_rng(8).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return b"\x00" + data  # a leading NUL never starts an image signature


def heif_like(brand: bytes) -> bytes:
    """The start of an ISO-BMFF (HEIC/AVIF) file: an ftyp box with the brand, then a meta box header."""
    ftyp = b"ftyp" + brand + b"\x00\x00\x00\x00" + b"mif1" + brand
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + struct.pack(">I", 8) + b"meta" + bytes(64)


def truncated(build: Callable[[], bytes], fraction: float) -> Callable[[], bytes]:
    return lambda: (data := build())[: int(len(data) * fraction)]


def corrupt_png_crc() -> bytes:
    """A complete PNG with one bit flipped inside its image data (the chunk CRC then fails)."""
    data = bytearray(cv_encode(".png", gray()))
    idat = data.index(b"IDAT")
    data[idat + 12] ^= 0x01
    return bytes(data)


def big_png() -> bytes:
    return cv_encode(".png", scene())


def big_jpeg() -> bytes:
    return cv_encode(".jpg", scene())


def progressive_jpeg() -> bytes:
    return cv_encode(".jpg", scene(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])


REJECTED: list[Rejected] = [
    Rejected("empty", lambda: b"", 400, "empty_file"),
    Rejected("text", lambda: b"just some words, not a picture\n", 415, "unsupported_media_type"),
    Rejected(
        "text_starting_with_BM",
        lambda: b"BMW 320i, 1987, one owner, full service history",
        415,
        "unsupported_media_type",
    ),
    Rejected(
        "html",
        lambda: b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        415,
        "unsupported_media_type",
    ),
    Rejected(
        "svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="5"/></svg>', 415, "unsupported_media_type"
    ),
    Rejected("json", lambda: b'{"image": "base64, maybe?"}', 415, "unsupported_media_type"),
    Rejected("zip", zip_of_png, 415, "unsupported_media_type"),
    Rejected("pdf", lambda: b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", 415, "unsupported_media_type"),
    Rejected("gif", lambda: pil_encode(Image.fromarray(gray()), "GIF"), 415, "unsupported_media_type"),
    Rejected("heic", lambda: heif_like(b"heic"), 415, "unsupported_media_type"),
    Rejected("avif", lambda: heif_like(b"avif"), 415, "unsupported_media_type"),
    Rejected("random_bytes", random_bytes, 415, "unsupported_media_type"),
    Rejected("truncated_jpeg", truncated(big_jpeg, 0.5), 400, "undecodable_image"),
    Rejected("truncated_progressive_jpeg", truncated(progressive_jpeg, 0.6), 400, "undecodable_image"),
    Rejected("truncated_png", truncated(big_png, 0.5), 400, "undecodable_image"),
    Rejected("png_signature_only", lambda: b"\x89PNG\r\n\x1a\n", 400, "undecodable_image"),
    Rejected("jpeg_header_without_scan", lambda: jpeg_declaring(64, 48), 400, "undecodable_image"),
    Rejected("png_bad_crc", corrupt_png_crc, 400, "undecodable_image"),
    Rejected("png_60000x60000", lambda: png_declaring(60000, 60000), 413, "too_many_pixels"),
    Rejected("png_0x0", lambda: png_declaring(0, 0), 400, "undecodable_image"),
    Rejected("jpeg_65500x65500", lambda: jpeg_declaring(65500, 65500), 413, "too_many_pixels"),
    Rejected("webp_16384x16384", lambda: webp_declaring(16384, 16384), 413, "too_many_pixels"),
    Rejected("bmp_100000x100000", lambda: bmp_declaring(100000, 100000), 413, "too_many_pixels"),
    Rejected("bmp_negative_width", lambda: bmp_declaring(-64, 48), 400, "undecodable_image"),
    Rejected("tiff_70000x70000", lambda: tiff_with([(256, 4, 70000), (257, 4, 70000)]), 413, "too_many_pixels"),
    Rejected("tiff_without_size_tags", lambda: tiff_with([(259, 3, 1)]), 400, "undecodable_image"),
]

# What the fuzzers mutate: one small valid file of every format we read.
SEEDS: list[bytes] = [
    cv_encode(".png", gray()[:12, :16]),
    cv_encode(".png", np.dstack([scene(), alpha_mask()])[:12, :16]),
    cv_encode(".jpg", scene()[:12, :16]),
    cv_encode(".jpg", gray()[:16, :16], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    exif_jpeg(6, gray()[:12, :16]),
    cv_encode(".webp", scene()[:12, :16]),
    cv_encode(".bmp", scene()[:12, :16]),
    cv_encode(".tiff", gray()[:12, :16]),
]
