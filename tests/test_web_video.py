"""Films on the web page, driven in headless Chromium (Playwright) against a real server.

A film chosen on the page becomes a video job (POST /videos); its card follows the job to the end and the MP4 it
downloads is decoded here. A long film is cancelled while it runs, and the job is gone from the server. A reference
photo goes with the film, read back from the request on the wire, and a busy 503 is retried. The first test runs
the shipped model (conftest's live_server); the others a server on the shipped model if it takes hints, else on
the small hint model the tests export (tests/hint_model.py), so that a reference photo is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, FilePayload, Locator, Page, Route, expect

from tests.browser import docs_output
from tests.conftest import MODEL, Server, launch
from tests.hint_model import export_small_model
from tests.test_video import write_clip
from tests.test_web_editor import Sent, parse_form, takes_hints
from tests.test_web_page import RESULT_TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every value a film card's data-state takes, recorded as it happens (a short film may pass a state between polls).
RECORD_STATES_JS = """() => {
  window.__states = {};
  new MutationObserver((records) => {
    for (const r of records) {
      const name = r.target.querySelector(".file-name").textContent;
      const seen = (window.__states[name] ||= []);
      if (r.oldValue && seen.at(-1) !== r.oldValue) seen.push(r.oldValue);
      if (seen.at(-1) !== r.target.dataset.state) seen.push(r.target.dataset.state);
    }
  }).observe(document.querySelector("#film-list"), {
    subtree: true, attributes: true, attributeFilter: ["data-state"], attributeOldValue: true,
  });
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("web-video")
    model = MODEL if takes_hints(MODEL) else export_small_model(tmp / "hints.onnx", hints=True)
    server = launch(tmp, {"COLORIZER_MODEL_PATH": str(model), "COLORIZER_VIDEO_DIR": str(tmp / "videos")})
    yield server
    server.terminate()


@dataclass
class Session:
    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def session(browser: Browser) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    s = Session(page)
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    # Playwright turns file-chooser interception on without waiting for it when a listener appears; one listener
    # from the start means that no chooser opened later slips past expect_file_chooser as a (headless) dialog.
    page.on("filechooser", lambda chooser: None)
    yield s
    context.close()


def open_page(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.evaluate(RECORD_STATES_JS)


def film_card(page: Page, name: str) -> Locator:
    return page.locator("#film-list .card").filter(has=page.locator(".file-name", has_text=name))


def choose(page: Page, button: str, files: Path | FilePayload) -> None:
    """Pick files the way a person does: the button opens the system chooser."""
    with page.expect_file_chooser() as chooser:
        page.locator(button).click()
    chooser.value.set_files(files)


def frame_count(data: bytes, path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of an MP4, decoded with PyAV."""
    path.write_bytes(data)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(container.streams.video[0])]
    return len(frames), frames[0].shape[1], frames[0].shape[0]


def test_film_shows_progress_and_downloads_as_mp4(session: Session, live_server: Server, tmp_path: Path) -> None:
    """The whole way with the shipped model: choose, follow, play, download, remove."""
    page, server = session.page, live_server
    open_page(page, server)
    film = write_clip(tmp_path / "harbour.mp4", frames=16, fps=8, width=320, height=180)

    # The film chooser is a button, reached and pressed from the keyboard.
    chooser_button = page.locator("#film-choose")
    expect(chooser_button).to_have_accessible_name("Choose a film")
    chooser_button.focus()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    chooser.value.set_files(film)

    card = film_card(page, "harbour.mp4")
    expect(card).to_have_attribute("data-state", "done", timeout=RESULT_TIMEOUT_MS)
    seen = page.evaluate("window.__states")["harbour.mp4"]
    assert seen[0] == "uploading", seen
    assert seen.index("queued") < seen.index("done"), seen
    expect(card.locator(".status")).to_have_text("Ready: 16 frames in colour.")
    expect(card.locator("progress")).to_be_hidden()
    expect(card.locator("button.cancel")).to_be_hidden()

    job_id = card.get_attribute("data-job")
    assert job_id
    job = httpx.get(f"{server.url}/videos/{job_id}", timeout=10).json()
    assert (job["status"], job["frames_total"], job["frames_done"]) == ("done", 16, 16)

    # The download is the job's MP4: every frame, the film's size.
    download_link = card.locator("a.download")
    expect(download_link).to_have_accessible_name("Download MP4: harbour-color.mp4")
    with page.expect_download() as info:
        download_link.click()
    assert info.value.suggested_filename == "harbour-color.mp4"
    data = Path(info.value.path()).read_bytes()
    assert data[4:8] == b"ftyp", "not an MP4"
    assert frame_count(data, tmp_path / "downloaded.mp4") == (16, 320, 180)
    served = httpx.get(f"{server.url}/videos/{job_id}/result", timeout=30).content
    assert data == served

    # Screenshot for the docs, then the narrow phone width: nothing scrolls sideways.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    # The colour film plays in the page, to its end (which also settles its controls for the screenshot).
    video = card.locator("video")
    expect(video).to_be_visible()
    video.evaluate("(v) => { v.muted = true; return v.play(); }")
    page.wait_for_function("(v) => v.ended", arg=video.element_handle(), timeout=RESULT_TIMEOUT_MS)
    page.screenshot(path=docs_output("screenshots/web-video.png", tmp_path), full_page=True, animations="disabled")
    page.set_viewport_size({"width": 360, "height": 740})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways at 360 px ({width} px wide)"
    page.screenshot(path=tmp_path / "web-video-360.png", full_page=True)

    # Removing the card deletes the job on the server and hands focus on.
    page.set_viewport_size({"width": 1280, "height": 800})
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        card.locator("button.remove").click()
    assert deleted.value.status == 204
    expect(card).to_have_count(0)
    expect(chooser_button).to_be_focused()
    assert httpx.get(f"{server.url}/videos/{job_id}", timeout=10).status_code == 404
    assert session.errors == [], session.errors


def test_cancel_a_running_film(session: Session, server: Server, tmp_path: Path) -> None:
    page = session.page
    open_page(page, server)
    film = write_clip(tmp_path / "long.mp4", frames=2400, fps=24, width=96, height=64, audio=False)
    choose(page, "#film-choose", film)

    card = film_card(page, "long.mp4")
    expect(card).to_have_attribute("data-state", "running", timeout=RESULT_TIMEOUT_MS)
    expect(card.locator(".status")).to_contain_text("of 2400")
    job_id = card.get_attribute("data-job")
    assert job_id
    cancel = card.locator("button.cancel")
    expect(cancel).to_have_accessible_name("Cancel long.mp4")
    cancel.click()

    expect(card).to_have_attribute("data-state", "cancelled")
    expect(card.locator(".status")).to_contain_text("Cancelled")
    expect(cancel).to_be_hidden()
    expect(card.locator("a.download")).to_be_hidden()
    expect(card.locator("button.remove")).to_be_focused()  # focus does not fall off the page with the button
    answer = httpx.get(f"{server.url}/videos/{job_id}", timeout=10)
    assert answer.status_code == 404, answer.text  # the job and its files are gone
    assert session.errors == [], session.errors


def test_reference_photo_goes_with_the_film_and_busy_answers_are_retried(
    session: Session, server: Server, tmp_path: Path
) -> None:
    page = session.page
    open_page(page, server)
    sent: list[Sent] = []
    busy = "The server is busy right now; try again in a moment."

    def answer(route: Route) -> None:
        # With interception on, Chromium hands Playwright the bodies of uploads made from in-memory files.
        sent.append(parse_form(route.request))
        if len(sent) == 1:
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps({"detail": busy, "code": "overloaded"}),
            )
        else:
            route.fallback()

    page.route("**/videos", answer)

    blue = np.zeros((48, 64, 3), np.uint8)
    blue[:] = (200, 120, 40)  # BGR: a blue sky of a photo
    reference = cv2.imencode(".png", blue)[1].tobytes()
    choose(page, "#film-reference", {"name": "blue.png", "mimeType": "image/png", "buffer": reference})
    expect(page.locator("#film-reference-text")).to_have_text("Films added now borrow the colours of blue.png.")
    expect(page.locator("#film-reference-thumb")).to_be_visible()

    film = write_clip(tmp_path / "street.mp4", frames=12, fps=12, width=96, height=64).read_bytes()
    choose(page, "#film-choose", {"name": "street.mp4", "mimeType": "video/mp4", "buffer": film})
    card = film_card(page, "street.mp4")
    expect(card.locator(".meta")).to_contain_text("colours of blue.png")
    expect(card).to_have_attribute("data-state", "done", timeout=RESULT_TIMEOUT_MS)
    seen = page.evaluate("window.__states")["street.mp4"]
    assert seen.index("waiting") < seen.index("done"), seen

    assert len(sent) == 2, "the busy answer was not retried exactly once"
    for request in sent:
        assert request.fields.get("file") == film, "the film was not sent whole"
        assert request.fields.get("reference") == reference, "the reference photo was not sent with the film"
        assert request.filenames == {"file": "street.mp4", "reference": "blue.png"}
    expect(card.locator(".status")).to_have_text("Ready: 12 frames in colour.")

    # Without a reference the next film goes alone.
    page.locator("#film-reference-remove").click()
    expect(page.locator("#film-reference-box")).to_be_hidden()
    expect(page.locator("#film-reference")).to_be_focused()
    choose(page, "#film-choose", {"name": "plain.mp4", "mimeType": "video/mp4", "buffer": film})
    expect(film_card(page, "plain.mp4")).to_have_attribute("data-state", "done", timeout=RESULT_TIMEOUT_MS)
    assert "reference" not in sent[-1].fields
    assert session.errors == [], session.errors


def test_errors_reach_the_person(session: Session, server: Server, tmp_path: Path) -> None:
    """The API's sentence for a file that is no film, and a failed job's own sentence (staged)."""
    page = session.page
    open_page(page, server)
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("These are notes about a film, not a film.\n")
    choose(page, "#film-choose", bogus)
    card = film_card(page, "notes.mp4")
    expect(card).to_have_attribute("data-state", "failed", timeout=RESULT_TIMEOUT_MS)
    answer = httpx.post(
        server.url + "/videos", files={"file": ("notes.mp4", bogus.read_bytes(), "video/mp4")}, timeout=30
    )
    assert 400 <= answer.status_code < 500, answer.text
    expect(card.locator(".error")).to_have_text(answer.json()["detail"])
    expect(card.locator("button.cancel")).to_be_hidden()

    sentence = "frame 7 could not be decoded: the file is damaged there; export the film again"
    page.route(
        "**/videos",
        lambda route: route.fulfill(status=202, json={"id": "staged", "status_url": "/videos/staged"}),
    )
    page.route(
        "**/videos/staged",
        lambda route: route.fulfill(
            json={
                "id": "staged",
                "status": "failed",
                "progress": 0.2,
                "frames_done": 6,
                "frames_total": 30,
                "error": sentence,
            }
        ),
    )
    choose(page, "#film-choose", {"name": "damaged.mp4", "mimeType": "video/mp4", "buffer": b"staged"})
    damaged = film_card(page, "damaged.mp4")
    expect(damaged).to_have_attribute("data-state", "failed")
    expect(damaged.locator(".error")).to_have_text(sentence)
    expect(page.locator("#announcer")).to_contain_text(sentence)
    assert session.errors == [], session.errors


def test_reference_is_offered_only_to_a_model_that_takes_it(session: Session, server: Server) -> None:
    page = session.page
    open_page(page, server)
    expect(page.locator("#film-reference")).to_be_visible()
    info = httpx.get(server.url + "/model", timeout=10).json()
    page.route("**/model", lambda route: route.fulfill(json={**info, "hints": []}))
    page.reload()
    expect(page.locator("#model-info")).to_be_visible()
    expect(page.locator("#film-reference")).to_be_hidden()
    expect(page.locator("#film-choose")).to_be_visible()
    assert session.errors == [], session.errors


def test_a_damaged_film_comes_back_with_its_warnings_on_the_card(
    session: Session, server: Server, tmp_path: Path
) -> None:
    """Megamind.avi in small (tests/video_corpus.py): AC-3 sound with packets that do not decode. The film is done,
    and its card lists what the server skipped and re-encoded, as the job status says."""
    from tests.video_corpus import ac3_avi_bad_audio

    page = session.page
    open_page(page, server)
    choose(page, "#film-choose", ac3_avi_bad_audio(tmp_path / "megamind.avi"))
    card = film_card(page, "megamind.avi")
    expect(card).to_have_attribute("data-state", "done", timeout=RESULT_TIMEOUT_MS)
    expect(card.locator(".film-warnings li")).to_have_text(
        [
            "The AC-3 sound track was re-encoded to AAC.",
            "3 of 29 audio packets could not be decoded and were skipped.",
        ]
    )
    job_id = card.get_attribute("data-job")
    job = httpx.get(f"{server.url}/videos/{job_id}", timeout=10).json()
    assert len(job["warnings"]) == 2
    assert session.errors == []
