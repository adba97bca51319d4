"""bench.train_speed: the training commands of a git revision and of this tree, run side by side and timed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

import bench.common
from bench import train_speed
from tests.conftest import photo_like


@pytest.mark.slow
def test_both_sides_run_the_cycle_and_the_fine_tune_and_are_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):
        cv2.imwrite(str(photos / f"p{i}.png"), photo_like(160 + 8 * i, 200, seed=i))
    monkeypatch.setattr(bench.common, "RESULTS", tmp_path / "results")
    small = "--crop_size 64 --width 8 --batch_size 4 --workers 0 --val_fraction 0.2"
    flags = ["--rounds", "1", "--cycle_steps", "4", "--finetune_steps", "50", "--data_dir", str(photos)]
    result = train_speed.main([*flags, "--cache_dir", str(tmp_path / "cache"), "--cycle_args", small])

    assert result["base_commit"] == train_speed.git("rev-parse", "HEAD")
    for side in ("base", "tree"):
        assert all(result["median"][side][stage] > 0 for stage in ("cycle", "finetune"))
    ratio = result["median"]["tree"]["finetune"] / result["median"]["base"]["finetune"]
    assert result["tree_over_base"]["finetune"] == pytest.approx(ratio)
    expected_hours = (2500 * result["median"]["tree"]["cycle"] + 3430 * result["median"]["tree"]["finetune"]) / 3600
    assert result["recipe_hours"]["tree"] == pytest.approx(expected_hours)
    assert json.loads((tmp_path / "results" / "train_speed.json").read_text())["median"] == result["median"]
    assert "train-speed-" not in train_speed.git("worktree", "list")  # the base's checkout is gone


def test_the_fine_tune_is_timed_between_its_progress_lines() -> None:
    """Each line gives the mean since the start: 25 steps at 4 s (a slow start), then 50 more at 2 s."""
    log = "step 25, loss 1.0 (anchor term 0.1), 4.00 s/step\nstep 75, loss 0.9 (anchor term 0.1), 2.67 s/step\n"
    assert train_speed.finetune_seconds(log) == pytest.approx((75 * 2.67 - 25 * 4.0) / 50)
    with pytest.raises(RuntimeError, match="fewer than two"):
        train_speed.finetune_seconds(log.splitlines()[0])
