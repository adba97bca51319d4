"""What a person sees when they give the shipped model hints, over real HTTP (issue 13's checks): a red point on a
gray region makes that region red, a blue reference turns the photo bluer, and a point on an EXIF-rotated upload
lands where the user clicked. These need a trained guided model, so they run on models/colorizer.onnx."""

from __future__ import annotations

import json

import cv2
import httpx
import numpy as np

from tests.conftest import Server, decode_png, photo_like
from tests.corpus import exif_jpeg

RED = "#c03020"


def gray_card(height: int = 240, width: int = 320) -> np.ndarray:
    """A gray photo with a large flat mid-gray panel on the left half: a region with no colour of its own."""
    img = cv2.cvtColor(photo_like(height, width), cv2.COLOR_BGR2GRAY)
    img[20 : height - 20, 20 : width // 2 - 10] = 128
    return img


def lab(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr[:, :, :3].astype(np.float32) / 255, cv2.COLOR_BGR2Lab)


def colorize(server: Server, image: bytes, hints: object = None, reference: bytes | None = None) -> np.ndarray:
    files = {"file": ("p.jpg", image, "image/jpeg")}
    if reference is not None:
        files["reference"] = ("r.png", reference, "image/png")
    data = {} if hints is None else {"hints": json.dumps(hints)}
    r = httpx.post(server.url + "/colorize", files=files, data=data, timeout=60)
    assert r.status_code == 200, r.text
    return decode_png(r.content)


def redness(img: np.ndarray, x: int, y: int, r: int = 12) -> float:
    """Mean a (green − red axis) of the disc around (x, y)."""
    return float(lab(img)[y - r : y + r, x - r : x + r, 1].mean())


def test_a_red_point_on_a_gray_region_makes_it_red(live_server: Server) -> None:
    photo = cv2.imencode(".jpg", gray_card())[1].tobytes()
    plain = colorize(live_server, photo)
    hinted = colorize(live_server, photo, {"points": [{"x": 80, "y": 120, "color": RED}]})
    assert redness(hinted, 80, 120) > redness(plain, 80, 120) + 10
    hue = np.degrees(np.arctan2(*lab(hinted)[110:130, 70:90, 1:].mean((0, 1))[::-1]))
    target = lab(np.array([[[0x20, 0x30, 0xC0]]], np.uint8))[0, 0]
    assert abs(hue - np.degrees(np.arctan2(target[2], target[1]))) < 30  # the hue of the hint, not just "more a"
    # the far side of the photo is left much as it was
    assert abs(redness(hinted, 280, 200) - redness(plain, 280, 200)) < 5


def test_a_point_comes_back_in_the_colour_asked_for(live_server: Server) -> None:
    """Not just redder: at the point itself the photo's a, b are the hint's (app/point_follow.py), whatever share of
    the way the network went by itself."""
    photo = cv2.imencode(".jpg", gray_card())[1].tobytes()
    hinted = colorize(live_server, photo, {"points": [{"x": 80, "y": 120, "color": RED}]})
    asked = lab(np.array([[[0x20, 0x30, 0xC0]]], np.uint8))[0, 0, 1:]
    got = lab(hinted)[117:124, 77:84, 1:].mean((0, 1))
    assert np.linalg.norm(got - asked) < 6, (got, asked)


def test_a_blue_reference_moves_the_whole_photo_toward_blue(live_server: Server) -> None:
    photo = cv2.imencode(".jpg", gray_card())[1].tobytes()
    blue = np.zeros((64, 64, 3), np.uint8)
    blue[:] = (200, 110, 40)
    plain = colorize(live_server, photo)
    guided = colorize(live_server, photo, reference=cv2.imencode(".png", blue)[1].tobytes())
    assert lab(guided)[:, :, 2].mean() < lab(plain)[:, :, 2].mean() - 3  # b falls: bluer


def test_a_point_on_an_exif_rotated_upload_lands_where_the_user_clicked(live_server: Server) -> None:
    """The stored pixels are 240 wide × 320 high with EXIF orientation 6: seen, the photo is 320 × 240. A point at
    (80, 120) of the seen photo must colour the seen photo there, not where the stored pixels had it."""
    seen = gray_card()  # 240 × 320 as the user sees it
    stored = cv2.rotate(seen, cv2.ROTATE_90_COUNTERCLOCKWISE)  # a viewer turns it 90° clockwise back
    upload = exif_jpeg(6, stored)
    plain = colorize(live_server, upload)
    assert plain.shape[:2] == (240, 320)
    hinted = colorize(live_server, upload, {"points": [{"x": 80, "y": 120, "color": RED}]})
    assert redness(hinted, 80, 120) > redness(plain, 80, 120) + 10


def test_a_points_colour_stops_at_the_edge_of_the_surface_clicked(live_server: Server) -> None:
    """The network's colour comes at half the model's side; resized bilinearly, a red point on a dark panel
    bled red a dozen pixels into the light panel beside it. Put on the edges of L first (app/edges.py), the red steps
    down where the lightness does."""
    img = np.full((512, 512), 70, np.uint8)
    img[:, 256:] = 190  # a dark panel, then a light one from x = 256
    photo = cv2.imencode(".png", img)[1].tobytes()
    hinted = colorize(live_server, photo, {"points": [{"x": 200, "y": 256, "color": RED}]})
    a = lab(hinted)[200:312, :, 1].mean(axis=0)  # mean a of each column, over the rows around the point
    dark_side, light_side = float(a[252:256].mean()), float(a[258:262].mean())  # 1-4 px before, 2-5 px after
    assert dark_side > 20  # the red reached the edge of the panel clicked ...
    assert light_side < 0.25 * dark_side, (dark_side, light_side)  # ... and stopped there (bilinear: 0.42 of it)
