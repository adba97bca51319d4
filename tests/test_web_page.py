"""The web page at GET /, driven in headless Chromium (Playwright) against the real server and model.

Photos go in through the page's own file input; the checks read what a person would get: the colourised
picture's pixels in the page, the downloaded PNG, the zip of the whole set, and the API's error sentence
next to the file that caused it. Screenshots of the finished page are written to docs/screenshots/ when
UPDATE_SCREENSHOTS=1 is set (tests/browser.py), and to a temporary folder otherwise.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.browser import CHROMIUM, CHROMIUM_ARGS, docs_output  # noqa: F401  # re-exported for the browser tests

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RESULT_TIMEOUT_MS = 180_000  # a CPU-only model on a busy CI machine can be slow; nothing here asserts speed
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Mean |R-G| + |G-B| over all pixels, read back from a canvas in the page.
CHROMA_JS = """(img) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += Math.abs(d[i] - d[i + 1]) + Math.abs(d[i + 1] - d[i + 2]);
  return sum / (d.length / 4);
}"""

# Every value a card's data-state takes, recorded as it happens (the real model may answer quickly).
RECORD_STATES_JS = """() => {
  window.__states = {};
  new MutationObserver((records) => {
    for (const r of records) {
      const name = r.target.querySelector(".file-name").textContent;
      const seen = (window.__states[name] ||= []);
      if (r.oldValue && seen.at(-1) !== r.oldValue) seen.push(r.oldValue);
      seen.push(r.target.dataset.state);
    }
  }).observe(document.querySelector("#results"), {
    subtree: true, attributes: true, attributeFilter: ["data-state"], attributeOldValue: true,
  });
}"""


def gray_scene(width: int, height: int, seed: int) -> np.ndarray:
    """A gray photo-like scene: gradient sky, a soft sun, hills, textured ground and a tree. uint8 (H, W)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = 205 - 80 * (y / height)  # sky: brighter towards the horizon
    sun = np.exp(-(((x - 0.75 * width) ** 2 + (y - 0.2 * height) ** 2) / (2 * (0.06 * width) ** 2)))
    img += 50 * sun
    hills = 0.55 * height + 0.06 * height * np.sin(x / width * 7 + seed) + 0.03 * height * np.sin(x / width * 23)
    img = np.where(y > hills, 120 - 25 * ((y - hills) / height), img)
    ground = 0.72 * height
    texture = cv2.GaussianBlur(rng.normal(0, 28, (height, width)).astype(np.float32), (0, 0), 1.5)
    stripes = 10 * np.sin(y / 3 + 4 * np.sin(x / 40))
    img = np.where(y > ground, 85 + texture + stripes, img)
    trunk_x, trunk_w = int(0.25 * width), max(4, width // 40)
    img[int(0.5 * height) : int(0.8 * height), trunk_x : trunk_x + trunk_w] = 45
    crown = (x - trunk_x) ** 2 / (0.1 * width) ** 2 + (y - 0.45 * height) ** 2 / (0.12 * height) ** 2 < 1
    img = np.where(crown, 60 + texture * 0.8, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def chroma(bgr: np.ndarray) -> float:
    """The same measure as CHROMA_JS, in numpy."""
    px = bgr[:, :, :3].astype(np.int32)
    return float((np.abs(px[..., 2] - px[..., 1]) + np.abs(px[..., 1] - px[..., 0])).mean())


def decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a decodable image"
    return img


@dataclass
class Photos:
    sky: Path  # gray JPEG, landscape
    street: Path  # gray PNG, portrait
    bogus: Path  # text, named like a PNG
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (height, width)


@pytest.fixture
def photos(tmp_path: Path) -> Photos:
    sky, street = gray_scene(480, 320, seed=1), gray_scene(300, 400, seed=2)
    out = Photos(tmp_path / "sky.jpg", tmp_path / "street.png", tmp_path / "notes.png")
    assert cv2.imwrite(str(out.sky), sky, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert cv2.imwrite(str(out.street), street)
    out.bogus.write_text("These are notes about a photograph, not a photograph.\n")
    out.sizes = {"sky.jpg": sky.shape[:2], "street.png": street.shape[:2]}
    return out


@dataclass
class Session:
    page: Page
    requests: list[str]
    errors: list[str]


@pytest.fixture
def session(browser: Browser, live_server: Any) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    s = Session(page, [], [])
    page.on("request", lambda r: s.requests.append(r.url))
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    yield s
    context.close()


def card(page: Page, name: str) -> Any:
    return page.locator("#results .card").filter(has=page.locator(".file-name", has_text=name))


def assert_local_only(s: Session, base: str) -> None:
    outside = [u for u in s.requests if not u.startswith((base + "/", "blob:", "data:"))]
    assert not outside, f"the page fetched something from outside the server: {outside}"


def test_page_is_self_contained_and_labelled(session: Session, live_server: Any) -> None:
    page = session.page
    page.goto(live_server.url + "/")
    expect(page).to_have_title("Colorizer — colour for grayscale photos")

    picker = page.locator("input[type=file]")
    assert picker.get_attribute("accept") == "image/*"
    assert picker.get_attribute("multiple") is not None
    expect(page.locator("label[for=file-input]")).to_be_visible()
    assert page.locator("[aria-live]").count() >= 1
    expect(page.locator("label[for=api-key]")).to_have_count(1)

    # The footer line comes from GET /model.
    model = httpx.get(live_server.url + "/model", timeout=10).json()
    expect(page.locator("#model-info")).to_contain_text(str(model["version"]))

    # Keyboard: the first Tab reaches the skip link, and the file picker is reachable and shows focus.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    for _ in range(6):
        if page.evaluate("document.activeElement.id") == "file-input":
            break
        page.keyboard.press("Tab")
    expect(picker).to_be_focused()
    outline = page.locator("label[for=file-input]").evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none", "the focused file picker shows no focus ring"

    assert_local_only(session, live_server.url)
    assert not session.errors, session.errors


def test_colorize_compare_download_zip_and_error(
    session: Session, live_server: Any, photos: Photos, tmp_path: Path
) -> None:
    page = session.page
    page.goto(live_server.url + "/")
    page.evaluate(RECORD_STATES_JS)
    page.set_input_files("#file-input", [photos.sky, photos.street, photos.bogus])
    expect(page.locator("#results .card")).to_have_count(3)

    sky, street, bogus = card(page, "sky.jpg"), card(page, "street.png"), card(page, "notes.png")
    for good in (sky, street):
        expect(good).to_have_attribute("data-state", "done", timeout=RESULT_TIMEOUT_MS)
    expect(bogus).to_have_attribute("data-state", "error", timeout=RESULT_TIMEOUT_MS)

    # Each picture showed upload progress, then the indeterminate "colourising" state, then its result.
    states = page.evaluate("window.__states")
    for name in ("sky.jpg", "street.png"):
        seen = states[name]
        assert seen.index("uploading") < seen.index("processing") < seen.index("done"), seen
        progress = card(page, name).locator("progress")
        assert progress.get_attribute("value") is None, "progress was not indeterminate while colourising"
        expect(progress).to_be_hidden()

    # The bad file: the API's own sentence is shown on that file's card, and only there.
    answer = httpx.post(
        live_server.url + "/colorize",
        files={"file": ("notes.png", photos.bogus.read_bytes(), "image/png")},
        timeout=60,
    )
    assert answer.status_code in (400, 415), answer.text  # undecodable, or sniffed as not an image
    detail = answer.json()["detail"]
    expect(bogus.locator(".error")).to_be_visible()
    expect(bogus.locator(".error")).to_have_text(detail)
    expect(sky.locator(".error")).to_be_hidden()
    expect(bogus.locator("a.download")).to_be_hidden()
    expect(bogus.locator("button.retry")).to_be_hidden()  # the same file would fail the same way
    expect(page.locator("#announcer")).not_to_be_empty()

    # The result is in colour; the original (what was uploaded) is gray.
    after, before = sky.locator("img.img-after"), sky.locator("img.img-before")
    expect(after).to_have_attribute("alt", "Colourised: sky.jpg")
    expect(before).to_have_attribute("alt", "Original: sky.jpg")
    chroma_after, chroma_before = after.evaluate(CHROMA_JS), before.evaluate(CHROMA_JS)
    assert chroma_before < 0.5, f"the test photo should be gray, chroma {chroma_before:.2f}"
    assert chroma_after > 2.0, f"the result looks gray: chroma {chroma_after:.2f} (input {chroma_before:.2f})"
    h, w = photos.sizes["sky.jpg"]
    assert after.evaluate("img => [img.naturalHeight, img.naturalWidth]") == [h, w]

    # The before/after slider works from the keyboard and moves the clipped original.
    slider = sky.locator("input[type=range]")
    expect(slider).to_have_accessible_name("Compare original and colour of sky.jpg")
    slider.focus()
    page.keyboard.press("Home")
    expect(slider).to_have_value("0")
    page.keyboard.press("ArrowRight")
    expect(slider).to_have_value("1")
    pos = sky.locator(".compare").evaluate("el => getComputedStyle(el).getPropertyValue('--pos').trim()")
    assert pos == "1%"
    slider.fill("50")

    # Download one result: a PNG, named after the input, the input's size, in colour.
    with page.expect_download() as info:
        sky.locator("a.download").click()
    download = info.value
    assert download.suggested_filename == "sky-color.png"
    data = Path(download.path()).read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = decode(data)
    assert image.shape[:2] == (h, w)
    assert chroma(image) > 2.0

    # Screenshots for the docs (results shown), with no focus ring or hover left over from the steps above.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=docs_output("screenshots/web-desktop.png", tmp_path))
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=docs_output("screenshots/web-phone.png", tmp_path))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px wide)"
    page.set_viewport_size({"width": 360, "height": 740})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways at 360 px ({width} px wide)"
    page.set_viewport_size({"width": 1280, "height": 800})

    # Download the whole set as a zip from POST /colorize/batch: one PNG per good input, in order.
    expect(page.locator("#download-all")).to_be_enabled()
    with page.expect_download(timeout=RESULT_TIMEOUT_MS) as info:
        page.locator("#download-all").click()
    archive = info.value
    assert archive.suggested_filename == "colorized.zip"
    with zipfile.ZipFile(io.BytesIO(Path(archive.path()).read_bytes())) as z:
        assert z.testzip() is None
        assert z.namelist() == ["sky.png", "street.png"]
        for member, name in zip(z.namelist(), ("sky.jpg", "street.png"), strict=True):
            member_image = decode(z.read(member))
            assert member_image.shape[:2] == photos.sizes[name], member
    expect(page.locator("#zip-status")).to_contain_text("colorized.zip")

    assert_local_only(session, live_server.url)
    assert not session.errors, session.errors


def test_api_key_is_sent_and_busy_answers_are_retried(session: Session, live_server: Any, photos: Photos) -> None:
    """The page's side of two contracts, with the answers staged: the Bearer header, and 503 + Retry-After."""
    page = session.page
    page.goto(live_server.url + "/")
    page.locator("#settings summary").click()
    page.locator("#api-key").fill("test-key-123")
    page.reload()
    expect(page.locator("#api-key")).to_have_value("test-key-123")  # kept in localStorage

    seen: list[Request] = []
    busy = "The server is busy right now; try again in a moment."
    png = cv2.imencode(".png", np.full((32, 48, 3), (40, 120, 200), np.uint8))[1].tobytes()

    def answer(route: Route) -> None:
        seen.append(route.request)
        if len(seen) == 1:
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps({"detail": busy, "code": "overloaded"}),
            )
        else:
            route.fulfill(status=200, headers={"Content-Type": "image/png"}, body=png)

    page.route("**/colorize", answer)
    page.set_input_files("#file-input", photos.street)
    item = card(page, "street.png")
    expect(item.locator(".status")).to_contain_text(busy)
    expect(item).to_have_attribute("data-state", "done", timeout=30_000)
    assert len(seen) == 2
    assert all(r.headers.get("authorization") == "Bearer test-key-123" for r in seen)
    expect(item.locator("a.download")).to_have_attribute("download", "street-color.png")

    page.locator("#settings summary").click()
    page.locator("#api-key").fill("")
    page.reload()
    expect(page.locator("#api-key")).to_have_value("")
    assert not session.errors, session.errors


# A small gray PNG made in the page, then dropped on the drop zone and pasted as a clipboard screenshot.
DROP_AND_PASTE_JS = """async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 40;
  canvas.height = 30;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#777";
  ctx.fillRect(0, 0, 40, 30);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));

  const dropped = new DataTransfer();
  dropped.items.add(new File([blob], "dropped.png", { type: "image/png" }));
  const zone = document.querySelector("#dropzone");
  zone.dispatchEvent(new DragEvent("dragenter", { bubbles: true, cancelable: true, dataTransfer: dropped }));
  const highlighted = document.body.classList.contains("is-dragging");
  zone.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: dropped }));

  const clipboard = new DataTransfer();
  clipboard.items.add(new File([blob], "image.png", { type: "image/png" }));
  const paste = new ClipboardEvent("paste", { bubbles: true, cancelable: true, clipboardData: clipboard });
  document.body.dispatchEvent(paste);
  return highlighted;
}"""


def test_drop_and_paste_add_photos(session: Session, live_server: Any) -> None:
    """Drag and drop and paste feed the same queue as the file picker, and the real server colourises both."""
    page = session.page
    page.goto(live_server.url + "/")
    with page.expect_response(lambda r: r.url.endswith("/colorize") and r.status == 200, timeout=RESULT_TIMEOUT_MS):
        assert page.evaluate(DROP_AND_PASTE_JS), "dragging files over the page does not highlight the drop zone"
    dropped, pasted = card(page, "dropped.png"), card(page, "pasted-1.png")  # clipboard screenshots get a name
    expect(dropped).to_have_attribute("data-state", "done", timeout=RESULT_TIMEOUT_MS)
    expect(pasted).to_have_attribute("data-state", "done", timeout=RESULT_TIMEOUT_MS)
    for item in (dropped, pasted):  # the server's answer, at the size of what was dropped or pasted
        size = item.locator("img.img-after").evaluate("img => [img.naturalHeight, img.naturalWidth]")
        assert size == [30, 40]
    expect(pasted.locator("a.download")).to_have_attribute("download", "pasted-1-color.png")
    expect(page.locator("body")).not_to_have_class("is-dragging")

    page.locator("#clear-all").click()
    expect(page.locator("#results .card")).to_have_count(0)
    expect(page.locator("#results-section")).to_be_hidden()
    assert not session.errors, session.errors
