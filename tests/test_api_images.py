"""End to end: a real uvicorn server on a free port, the real model, real images over real HTTP."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from app.cores import available_cores
from app.pipeline import prepare
from tests.conftest import Server, colourfulness, decode_png, gray_png, photo_like
from tests.corpus import bgr16, cv_encode, gray16


def post_file(server: Server, data: bytes, name: str = "photo.png", **params: str) -> httpx.Response:
    return httpx.post(server.url + "/colorize", files={"file": (name, data)}, params=params, timeout=60)


def test_multipart_gray_png_comes_back_in_colour_at_the_same_size(live_server: Server) -> None:
    r = post_file(live_server, gray_png(240, 320))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    out = decode_png(r.content)
    assert out.shape == (240, 320, 3)
    assert colourfulness(out) > 2.0  # a gray image has 0


def test_raw_body_jpeg_with_output_format(live_server: Server) -> None:
    gray = cv2.cvtColor(photo_like(), cv2.COLOR_BGR2GRAY)
    body = cv2.imencode(".jpg", gray)[1].tobytes()
    for fmt, media in [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")]:
        r = httpx.post(
            live_server.url + f"/colorize?format={fmt}",
            content=body,
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == media
        assert decode_png(r.content).shape[:2] == gray.shape


def test_output_keeps_the_detail_of_the_input_lightness(live_server: Server) -> None:
    """The colour comes from the model; the L channel must be the original's, at full resolution."""
    gray = cv2.cvtColor(photo_like(480, 640), cv2.COLOR_BGR2GRAY)
    out = decode_png(post_file(live_server, cv2.imencode(".png", gray)[1].tobytes()).content)
    l_in = cv2.cvtColor(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.float32) / 255, cv2.COLOR_BGR2Lab)[..., 0]
    l_out = cv2.cvtColor(out.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)[..., 0]
    assert np.median(np.abs(l_in - l_out)) < 1.5  # only gamut clipping and 8-bit rounding differ


def test_alpha_is_kept(live_server: Server) -> None:
    bgra = cv2.cvtColor(photo_like(), cv2.COLOR_BGR2BGRA)
    bgra[:, :100, 3] = 0
    bgra[:, :, :3] = cv2.cvtColor(cv2.cvtColor(bgra[:, :, :3], cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    out = decode_png(post_file(live_server, cv2.imencode(".png", bgra)[1].tobytes()).content)
    assert out.shape == bgra.shape
    np.testing.assert_array_equal(out[:, :, 3], bgra[:, :, 3])


def test_what_lies_under_transparent_pixels_does_not_change_the_colour(live_server: Server) -> None:
    """A cut-out's hidden pixels can hold anything (black, white, the photo it was cut from); the model sees the
    cut-out on mid-gray, as training and evaluation show it cut-outs, so the visible colour does not depend on them."""
    gray = cv2.cvtColor(cv2.cvtColor(photo_like(), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    outs = []
    for hidden in (0, 255):
        bgra = cv2.cvtColor(gray, cv2.COLOR_BGR2BGRA)
        bgra[:, :120, :3] = hidden
        bgra[:, :120, 3] = 0
        outs.append(decode_png(post_file(live_server, cv2.imencode(".png", bgra)[1].tobytes()).content))
    visible = outs[0][:, 120:]
    assert colourfulness(visible[:, :, :3]) > 1.0  # the visible part is colourised
    np.testing.assert_array_equal(visible, outs[1][:, 120:])


def test_model_input_flattens_a_cut_out_on_mid_gray() -> None:
    from app.color import BACKDROP_L, model_input

    full_l = np.full((64, 64), 80.0, np.float32)
    alpha = np.zeros((64, 64), np.uint8)
    alpha[:, 32:] = 255
    small = model_input(full_l, 16, alpha)[0]
    np.testing.assert_allclose(small[:, :7], BACKDROP_L, atol=1e-4)  # transparent: the backdrop
    np.testing.assert_allclose(small[:, 9:], 80.0, atol=1e-4)  # opaque: the image's own L
    assert abs(BACKDROP_L - 53.585) < 0.01  # L of sRGB 128 gray
    alpha16 = alpha.astype(np.uint16) * 257
    np.testing.assert_allclose(model_input(full_l, 16, alpha16), model_input(full_l, 16, alpha), atol=1e-4)
    opaque = np.full((64, 64), 255, np.uint8)
    np.testing.assert_array_equal(model_input(full_l, 16, opaque), model_input(full_l, 16))


def lightness_of(img: np.ndarray) -> np.ndarray:
    """CIE L of an 8- or 16-bit gray or BGR(A) image, at the image's own precision."""
    bgr = img[:, :, :3] if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return cv2.cvtColor(bgr.astype(np.float32) / scale, cv2.COLOR_BGR2Lab)[:, :, 0]


SIXTEEN_BIT = [("gray16_png", ".png", gray16), ("bgr16_png", ".png", bgr16), ("bgr16_tiff", ".tiff", bgr16)]


@pytest.mark.parametrize(("name", "ext", "source"), SIXTEEN_BIT, ids=[n for n, _, _ in SIXTEEN_BIT])
def test_16_bit_input_is_read_at_16_bits(
    live_server: Server, name: str, ext: str, source: Callable[[], np.ndarray]
) -> None:
    """The lightness is the 16-bit truth, not the high byte's: the corpus's 16-bit samples have low bytes that
    move them 0.05..0.9 of an 8-bit step (tests/corpus.py), so keeping 8 bits is off by about 0.3 L throughout."""
    img16 = source()
    data = cv_encode(ext, img16)
    truth = lightness_of(img16)
    truncated = lightness_of((img16 >> 8).astype(np.uint8))
    assert np.abs(truncated - truth).max() > 0.3  # the test image can tell a truncating decoder from a right one
    # The service's own decode path (app.pipeline.prepare, as /colorize calls it) keeps every bit.
    prepared = prepare(data, 64, 50_000_000)
    assert np.abs(prepared.full_l - truth).max() < 0.01
    # Over HTTP the answer is an 8-bit PNG, so each pixel's L is within about one 8-bit step of the truth: the
    # typical pixel is 0.1 L off, where a decoder keeping the high byte measured 0.32-0.35 L.
    r = post_file(live_server, data, name=name)
    assert r.status_code == 200, r.text
    out = decode_png(r.content)
    assert out.shape[:2] == img16.shape[:2]
    assert np.median(np.abs(lightness_of(out) - truth)) < 0.2


def exif_rotated_jpeg(img: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose EXIF says 'rotate me', as phones write them."""
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    ifd = b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01" + bytes([0, orientation, 0, 0])
    ifd += b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + ifd
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    return jpeg[:2] + segment + jpeg[2:]


def test_exif_orientation_is_applied(live_server: Server) -> None:
    """All eight orientations over HTTP, judged by pixel content against Pillow's exif_transpose: the answer's
    lightness must match the right turn and be far from every other (a shape check cannot tell 90° from 270°)."""
    gray = cv2.cvtColor(photo_like(120, 160), cv2.COLOR_BGR2GRAY) // 2
    gray = gray + np.linspace(0, 120, 160, dtype=np.uint8)[None, :]  # a left-to-right ramp: no turn or flip looks alike
    jpegs = {o: exif_rotated_jpeg(gray, o) for o in range(1, 9)}
    views = {o: np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(j))).convert("L")) for o, j in jpegs.items()}
    for orientation, jpeg in jpegs.items():
        r = post_file(live_server, jpeg, name="phone.jpg")
        assert r.status_code == 200, r.text
        l_out = lightness_of(decode_png(r.content))
        distance = {
            o: float(np.median(np.abs(l_out - lightness_of(v)))) if v.shape == l_out.shape else np.inf
            for o, v in views.items()
        }
        assert distance[orientation] < 1.5, (orientation, distance)
        others = [d for o, d in distance.items() if o != orientation]
        assert min(others) > 5, (orientation, distance)


def test_batch_returns_a_zip_in_request_order(live_server: Server) -> None:
    sizes = [(120, 160), (200, 100), (64, 64)]
    files = [("files", (f"img{i}.png", gray_png(h, w))) for i, (h, w) in enumerate(sizes)]
    files.append(("files", ("img0.jpg", cv2.imencode(".jpg", photo_like(50, 70))[1].tobytes())))
    r = httpx.post(live_server.url + "/colorize/batch", files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.namelist() == ["img0.png", "img1.png", "img2.png", "img0-1.png"]
    shapes = [decode_png(archive.read(n)).shape[:2] for n in archive.namelist()]
    assert shapes == [*sizes, (50, 70)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"hello, this is plain text", 415, "unsupported_media_type"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", 415, "unsupported_media_type"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', 415, "unsupported_media_type"),
        (b'{"image": "no"}', 415, "unsupported_media_type"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xea`\x00\x00\xea`\x08\x00\x00\x00\x00", 413, "too_many_pixels"),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00\x00",
            400,
            "undecodable_image",
        ),
    ],
)
def test_bad_uploads_get_a_clear_json_error(live_server: Server, body: bytes, status: int, code: str) -> None:
    r = post_file(live_server, body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert len(r.json()["detail"]) > 10


def test_truncated_images_are_400(live_server: Server) -> None:
    for ext in (".png", ".jpg"):
        data = cv2.imencode(ext, photo_like())[1].tobytes()
        r = post_file(live_server, data[: len(data) // 3], name="cut" + ext)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "undecodable_image"


def test_missing_field_and_wrong_content_type(live_server: Server) -> None:
    r = httpx.post(live_server.url + "/colorize", files={"image": ("a.png", gray_png())}, timeout=30)
    assert (r.status_code, r.json()["code"]) == (422, "missing_field")
    r = httpx.post(live_server.url + "/colorize", content=gray_png(), headers={"Content-Type": "text/plain"})
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    r = httpx.post(live_server.url + "/colorize/batch", files={"file": ("a.png", gray_png())}, timeout=30)
    assert (r.status_code, r.json()["code"]) == (422, "missing_field")
    r = httpx.get(live_server.url + "/nope")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_health_ready_model_and_metrics(live_server: Server) -> None:
    assert httpx.get(live_server.url + "/healthz").status_code == 200
    assert httpx.get(live_server.url + "/readyz").json() == {"status": "ready"}
    model = httpx.get(live_server.url + "/model").json()
    assert model["input_size"] > 0
    assert model["providers"] == ["CPUExecutionProvider"]
    assert len(model["sha256"]) == 64
    # Issue 16: in flight is what runs at once (one per core on a CPU), with the admission line in front of it.
    assert model["batching"]["max_in_flight"] == max(2, available_cores())
    tuning = model["tuning"]  # the effective values, per-provider defaults resolved once
    assert tuning["provider"] == "cpu"
    assert tuning["max_in_flight"] == model["batching"]["max_in_flight"]
    assert tuning["max_queue_wait_ms"] == model["batching"]["max_queue_wait_ms"] == 2000
    text = httpx.get(live_server.url + "/metrics").text
    info = next(line for line in text.splitlines() if line.startswith("colorizer_model_info{"))
    assert 'provider="CPUExecutionProvider"' in info
    assert 'precision="fp32"' in info  # the tests pin fp32 (tests/conftest.py); tests/test_precision.py has int8
    assert model["precision"] == "fp32"
    for name in (
        "colorizer_request_duration_seconds",
        "colorizer_stage_duration_seconds",
        "colorizer_batch_size",
        "colorizer_queue_depth",
        "colorizer_images_total",
    ):
        assert f"\n{name}" in text
