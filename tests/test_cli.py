"""`colorizer colorize` offline: folders and files in, same-size colour images out, bad files reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

from tests.conftest import MODEL, ROOT, colourfulness, photo_like


def test_colorize_folder_and_file(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "album").mkdir(parents=True)
    for i, (h, w) in enumerate([(120, 160), (90, 200), (64, 64)]):
        cv2.imwrite(str(src / "album" / f"p{i}.jpg"), cv2.cvtColor(photo_like(h, w, seed=i), cv2.COLOR_BGR2GRAY))
    (src / "album" / "broken.png").write_bytes(b"not an image")
    single = tmp_path / "single.png"
    cv2.imwrite(str(single), cv2.cvtColor(photo_like(50, 60), cv2.COLOR_BGR2GRAY))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "colorize", str(src), str(single), "-o", str(out), "--batch-size", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"COLORIZER_MODEL_PATH": str(MODEL), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 1, result.stderr  # one input was broken, and the exit status says so
    assert "broken.png" in result.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["album/p0.png", "album/p1.png", "album/p2.png", "single.png"]
    for name, shape in [("album/p1.png", (90, 200)), ("single.png", (50, 60))]:
        img = cv2.imread(str(out / name))
        assert img.shape[:2] == shape
        assert colourfulness(img) > 1.0


def test_colorize_uses_the_services_png_compression(tmp_path: Path) -> None:
    """The CLI runs the service's own path (app/colorize.py), so COLORIZER_PNG_COMPRESSION reaches its PNGs."""
    src = tmp_path / "p.png"
    cv2.imwrite(str(src), cv2.cvtColor(photo_like(120, 160), cv2.COLOR_BGR2GRAY))
    sizes = {}
    for level in ("0", "9"):
        out = tmp_path / f"out{level}"
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "colorize", str(src), "-o", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={"COLORIZER_MODEL_PATH": str(MODEL), "COLORIZER_PNG_COMPRESSION": level, "PATH": "/usr/bin:/bin"},
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        sizes[level] = (out / "p.png").stat().st_size
    assert sizes["0"] > 120 * 160 * 3  # stored, not deflated
    assert sizes["9"] < sizes["0"] / 2
