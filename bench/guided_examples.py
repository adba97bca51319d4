"""Before/after examples for docs/GUIDED.md, through the service's own guidance and pipeline code (app/guidance.py,
ModelRuntime, app/color.py): gray input, automatic, a few points as a person would place them, a palette, the
original. Validation photos the model never trained on; the hint points are drawn as small rings.

    .venv/bin/python -m bench.guided_examples docs/guided_examples.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from app.color import join, lightness_u8, model_input
from app.edges import guided_ab
from app.guidance import parse_hints
from app.point_follow import follow_points
from app.runtime import ModelRuntime
from bench.common import MODEL

PHOTOS = Path.home() / ".cache" / "colorize" / "train" / "gcompris-qt-data/gcompris/src/activities"
SIZE = 256
# (photo, hints a person would give after seeing the automatic result, palette)
EXAMPLES = [
    (
        "categorization/resource/images/tools/screwDriver.webp",
        '{"points": [{"x": 70, "y": 75, "color": "#e03010", "radius": 8}, {"x": 190, "y": 60, "color": "#9090a0"},'
        ' {"x": 60, "y": 200, "color": "#9090a0"}]}',
        '{"palette": ["#e03010", "#9090a0"]}',
    ),
    (
        "categorization/resource/images/monuments/arcDeTriomphe.webp",
        '{"points": [{"x": 30, "y": 30, "color": "#2050c0"}, {"x": 225, "y": 40, "color": "#2050c0"},'
        ' {"x": 230, "y": 150, "color": "#2a6a2a"}]}',
        '{"palette": ["#2050c0", "#d8d0c0"]}',
    ),
    (
        "explore_monuments/resource/france/reimsCathedral.webp",
        '{"points": [{"x": 128, "y": 150, "color": "#d0a050"}, {"x": 40, "y": 20, "color": "#3060b0"}]}',
        '{"palette": ["#d0a050", "#3060b0"]}',
    ),
]


def load(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read {path} as an image")
    return cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def colorize(runtime: ModelRuntime, bgr: np.ndarray, hints_json: str | None) -> np.ndarray:
    full_l = lightness_u8(bgr)
    guidance = parse_hints(hints_json)
    assert runtime.ab_bins is not None
    hints = guidance.for_image(SIZE, SIZE, runtime.info.input_size, runtime.ab_bins) if guidance else None
    small = model_input(full_l, runtime.info.input_size)  # (1, S, S)
    ab = runtime.run(small[None], [hints])[0]
    if hints is not None and hints.has_points:  # as the service does (app/colorize.py)
        ab = follow_points(ab, small[0], hints.hint_ab, hints.hint_mask)
    return join(full_l, guided_ab(ab, small[0]))


def ring_points(img: np.ndarray, hints_json: str) -> np.ndarray:
    out = img.copy()
    for p in parse_hints(hints_json).points:
        cv2.circle(out, (int(p.x), int(p.y)), 6, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.circle(out, (int(p.x), int(p.y)), 6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/guided_examples.png")
    runtime = ModelRuntime(MODEL, ["CPUExecutionProvider"])
    rows = []
    for rel, points, palette in EXAMPLES:
        truth = load(PHOTOS / rel)
        gray = cv2.cvtColor(cv2.cvtColor(truth, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        rows.append(
            np.hstack(
                [
                    gray,
                    colorize(runtime, truth, None),
                    ring_points(colorize(runtime, truth, points), points),
                    colorize(runtime, truth, palette),
                    truth,
                ]
            )
        )
    grid = np.vstack(rows)
    header = np.full((28, grid.shape[1], 3), 255, np.uint8)
    for i, label in enumerate(("gray input", "automatic", "a few points", "palette", "original")):
        cv2.putText(header, label, (i * SIZE + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(out), np.vstack([header, grid]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
