"""Colour hints over real HTTP (DESIGN.md "Hints"): points, palette and reference photo on a guided model, the
422s for bad hints, and hints_unsupported on a model without hint inputs. The servers run small models the test
exports itself (tests/hint_model.py), so these checks hold whatever models/colorizer.onnx is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import Server, decode_png, gray_png, launch, photo_like
from tests.hint_model import export_small_model

POINTS = {"points": [{"x": 100, "y": 150, "color": "#c03020", "radius": 12}, {"x": 250, "y": 40, "color": "#2a5caa"}]}


def serve_small_model(tmp_path_factory: pytest.TempPathFactory, hints: bool) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("guided" if hints else "automatic")
    server = launch(tmp, {"COLORIZER_MODEL_PATH": str(export_small_model(tmp / "model.onnx", hints=hints))})
    yield server
    server.terminate()


@pytest.fixture(scope="module")
def guided(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_small_model(tmp_path_factory, hints=True)


@pytest.fixture(scope="module")
def automatic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_small_model(tmp_path_factory, hints=False)


def post(
    server: Server, hints: object = None, reference: bytes | None = None, image: bytes | None = None
) -> httpx.Response:
    files: dict[str, tuple[str, bytes, str]] = {"file": ("gray.png", image or gray_png(), "image/png")}
    if reference is not None:
        files["reference"] = ("ref.png", reference, "image/png")
    data = {} if hints is None else {"hints": hints if isinstance(hints, str) else json.dumps(hints)}
    return httpx.post(server.url + "/colorize", files=files, data=data, timeout=60)


def reference_png() -> bytes:
    blue = np.zeros((120, 160, 3), np.uint8)
    blue[:] = (200, 90, 30)
    return cv2.imencode(".png", blue)[1].tobytes()


def guided_counts(server: Server) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics").text
    counts = {}
    for line in text.splitlines():
        if line.startswith("colorizer_guided_requests_total{"):
            kind = line.split('guidance="')[1].split('"')[0]
            counts[kind] = float(line.rsplit(" ", 1)[1])
    return counts


def test_model_lists_the_hint_kinds(guided: Server, automatic: Server) -> None:
    assert httpx.get(guided.url + "/model").json()["hints"] == ["local", "global"]
    assert httpx.get(automatic.url + "/model").json()["hints"] == []


def test_points_palette_and_reference_each_change_the_colour(guided: Server) -> None:
    before = guided_counts(guided)
    plain = post(guided)
    assert plain.status_code == 200, plain.text
    base = decode_png(plain.content)
    assert base.shape[:2] == (240, 320)
    outputs = {
        "points": post(guided, POINTS),
        "palette": post(guided, {"palette": ["#2a5caa", "#e0c080"]}),
        "reference": post(guided, reference=reference_png()),
        "both": post(guided, {**POINTS, "palette": ["#e0c080"]}, reference=reference_png()),
    }
    for name, r in outputs.items():
        assert r.status_code == 200, (name, r.text)
        img = decode_png(r.content)
        assert img.shape == base.shape, name
        assert np.abs(img.astype(int) - base.astype(int)).max() > 0, f"{name} hints left the colour unchanged"
        # the lightness stays the photo's: hints change only a and b
        l_base = cv2.cvtColor(base, cv2.COLOR_BGR2Lab)[:, :, 0].astype(int)
        l_img = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, 0].astype(int)
        assert np.abs(l_img - l_base).mean() < 2.0, name
    # automatic output is unchanged by an empty hints field
    assert post(guided, "").content == plain.content
    after = guided_counts(guided)
    assert after["none"] - before["none"] == 2
    assert after["points"] - before["points"] == 1
    assert after["global"] - before["global"] == 2
    assert after["both"] - before["both"] == 1


def test_a_point_in_the_corrected_orientation_is_checked_against_the_image(guided: Server) -> None:
    inside = post(guided, {"points": [{"x": 319, "y": 239, "color": "#00ff00"}]})
    assert inside.status_code == 200, inside.text
    outside = post(guided, {"points": [{"x": 320, "y": 10, "color": "#00ff00"}]})
    assert outside.status_code == 422
    assert outside.json() == {
        "code": "invalid_hints",
        "detail": "point 0 at (320, 10) is outside the 320×240 image",
    }


@pytest.mark.parametrize(
    ("hints", "words"),
    [
        ("{not json", "not valid JSON"),
        ({"points": [{"x": 1, "y": 1, "color": "red"}]}, "is not a #rrggbb colour"),
        ({"pointz": []}, "unknown key 'pointz'"),
        ({"points": [{"x": 1, "y": 1, "color": "#000000"}] * 300}, "the limit is 256"),
    ],
)
def test_bad_hints_get_422_with_a_sentence_and_the_server_keeps_serving(
    guided: Server, hints: object, words: str
) -> None:
    r = post(guided, hints)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_hints"
    assert words in r.json()["detail"]
    assert post(guided).status_code == 200


def test_a_reference_that_is_not_an_image_is_refused_like_any_upload(guided: Server) -> None:
    r = post(guided, reference=b"this is not a picture")
    assert r.status_code in (400, 415)
    assert r.json()["code"] in ("undecodable_image", "unsupported_media_type")


def test_a_reference_cut_out_gives_its_visible_colours_only(guided: Server) -> None:
    """A reference PNG with a transparent background: what is stored under it (here black) is not part of the
    picture, so the answer is the one an opaque reference of the visible colour gives."""
    cut_out = np.zeros((120, 160, 4), np.uint8)
    cut_out[30:90, 40:120] = (200, 90, 30, 255)  # the blue of reference_png(); the rest transparent black
    with_alpha = post(guided, reference=cv2.imencode(".png", cut_out)[1].tobytes())
    assert with_alpha.status_code == 200, with_alpha.text
    assert (
        decode_png(with_alpha.content).tobytes()
        == decode_png(post(guided, reference=reference_png()).content).tobytes()
    )
    transparent = cut_out.copy()
    transparent[:, :, 3] = 0
    r = post(guided, reference=cv2.imencode(".png", transparent)[1].tobytes())
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_hints"
    assert "fully transparent" in r.json()["detail"]
    assert post(guided).status_code == 200


def test_batch_takes_a_palette_or_reference_for_every_image_but_no_points(guided: Server) -> None:
    files = [("files", (f"p{i}.png", gray_png(), "image/png")) for i in range(2)]
    plain = httpx.post(guided.url + "/colorize/batch", files=files, timeout=60)
    tinted = httpx.post(
        guided.url + "/colorize/batch", files=files, data={"hints": json.dumps({"palette": ["#2a5caa"]})}, timeout=60
    )
    assert plain.status_code == tinted.status_code == 200
    assert plain.content != tinted.content
    with_ref = httpx.post(
        guided.url + "/colorize/batch",
        files=[*files, ("reference", ("r.png", reference_png(), "image/png"))],
        timeout=60,
    )
    assert with_ref.status_code == 200
    refused = httpx.post(guided.url + "/colorize/batch", files=files, data={"hints": json.dumps(POINTS)}, timeout=60)
    assert refused.status_code == 422
    assert refused.json()["code"] == "invalid_hints"
    assert "only a palette" in refused.json()["detail"]


def test_a_model_without_hint_inputs_serves_automatic_and_refuses_hints(automatic: Server) -> None:
    assert post(automatic).status_code == 200
    for r in (post(automatic, POINTS), post(automatic, reference=reference_png())):
        assert r.status_code == 422
        assert r.json()["code"] == "hints_unsupported"
        assert "takes no colour hints" in r.json()["detail"]
    assert post(automatic, "").status_code == 200  # an empty hints field is no hints


def test_raw_body_still_serves_a_guided_model(guided: Server, tmp_path: Path) -> None:
    img = cv2.imencode(".jpg", photo_like(100, 130))[1].tobytes()
    r = httpx.post(guided.url + "/colorize", content=img, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert r.status_code == 200
    assert decode_png(r.content).shape[:2] == (100, 130)
