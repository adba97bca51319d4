"""Training end to end on a tiny generated photo folder: train, resume, evaluate, export, ONNX parity."""

from __future__ import annotations

import json
import os
from dataclasses import astuple
from itertools import product
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from tests.conftest import photo_like
from tests.hint_model import tiny_hint_run
from train import (
    choose_edges,
    choose_gate,
    choose_point_sigmas,
    choose_readout,
    compare,
    corrections,
    evaluate,
    export,
    finetune_hints,
    recipe,
)
from train.config import parse_config
from train.data import list_images, split_images
from train.ema import WeightAverage
from train.train import lr_at, train


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(12):
        img = photo_like(160 + 8 * i, 200, seed=i)
        (root / f"sub{i % 2}").mkdir(exist_ok=True)
        cv2.imwrite(str(root / f"sub{i % 2}" / f"p{i}.{'png' if i % 3 else 'jpg'}"), img)
    cutout = cv2.cvtColor(photo_like(80, 80, seed=99), cv2.COLOR_BGR2BGRA)
    cutout[:20, :, 3] = 0
    cv2.imwrite(str(root / "stamp.png"), cutout)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(("head", "hints"), [("classification", False), ("regression", False), ("combined", True)])
def test_train_resume_evaluate_export(photo_dir: Path, tmp_path: Path, head: str, hints: bool) -> None:
    out = tmp_path / "run"
    common = [
        "--data_dir",
        str(photo_dir),
        "--out_dir",
        str(out),
        "--crop_size",
        "64",
        "--width",
        "8",
        "--batch_size",
        "4",
        "--eval_every",
        "2",
        "--snapshot_every",
        "2",
        "--workers",
        "0",
        "--val_fraction",
        "0.2",
        "--calib_fraction",
        "0.3",
        "--hints",
        str(hints),
        "--hint_adapter",  # the hint model trains with the adapter from the start
        str(hints),
        "--head",
        head,
        "--warmup_steps",
        "1",
    ]
    ckpt = train(parse_config([*common, "--max_steps", "2"]))
    first = torch.load(ckpt, weights_only=False)
    assert first["step"] == 2
    assert first["model_args"]["head"] == head
    assert first["config"]["crop_size"] == 64
    assert first["model_args"]["hint_adapter"] == hints
    if hints:  # the adapter's projections start at zero and learn
        assert all(first["model"][f"hint_adapter.project.{i}.weight"].abs().sum() > 0 for i in range(3))
    train(parse_config([*common, "--max_steps", "4"]))  # resumes from last.pt
    assert torch.load(ckpt, weights_only=False)["step"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert torch.load(out / "step2.pt", weights_only=False)["step"] == 2  # snapshots stay beside last.pt
    assert torch.load(out / "step4.pt", weights_only=False)["step"] == 4
    assert all(np.isfinite(r["val_loss"]) for r in records)

    onnx_path = tmp_path / "model.onnx"
    export.main([ckpt, str(onnx_path), "--version", "test-1", *(["--calibrate"] if hints else [])])
    proto = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    inputs = [i.name for i in proto.graph.input]
    if hints:
        assert inputs == ["L", "hint_ab", "hint_mask", "global_hint"]
        assert meta["colorizer.hints"] == "local,global"
        bins = json.loads(meta["colorizer.ab_bins"])
        assert len(bins) == first["model_args"]["num_bins"] > 0
        assert all(len(b) == 2 for b in bins)
        assert json.loads(meta["colorizer.calibration"]) != [1, 0, 0, 1, 0, 0]
    else:
        assert inputs == ["L"]
        assert "colorizer.hints" not in meta
    assert meta["colorizer.input_size"] == "64"
    assert meta["colorizer.version"] == "test-1"
    assert head in meta["colorizer.architecture"]
    assert "colorizer.trained_on" in meta
    model, _ = export.load_model(ckpt)
    if hints:
        model.set_calibration(json.loads(meta["colorizer.calibration"]))
    assert export.parity(model, onnx_path, 64, batch=4) < 1e-3  # with hints present, for a hint model
    assert meta["colorizer.readout"] == "regression"
    if head == "combined":  # the same weights, read out from the bins instead
        by_bins = tmp_path / "bins.onnx"
        export.main([ckpt, str(by_bins), "--readout", "annealed_mean"])
        assert {p.key: p.value for p in onnx.load(str(by_bins)).metadata_props}["colorizer.readout"] == "annealed_mean"
        model, _ = export.load_model(ckpt, readout="annealed_mean")
        assert export.parity(model, by_bins, 64, batch=4) < 1e-3
        assert export.parity(model, onnx_path, 64, batch=4) > 1e-3  # it is another output than the regression's
        choices, gray = choose_readout.compare(ckpt, str(photo_dir))  # scored on the calibration split
        shrinks = choose_readout.CHROMA_SHRINKS
        readouts = [("regression", 0.0)] + [("annealed_mean", t) for t in choose_readout.ANNEALED_TS]
        calibrations = ("none", "2x2", "gain")
        assert [(c.readout, c.annealed_t, c.calibration, c.chroma_shrink) for c in choices] == [
            (r, t, calibration, shrink) for r, t in readouts for calibration in calibrations for shrink in shrinks
        ]
        assert all(np.isfinite(c.psnr) and c.psnr > 5 for c in choices)
        assert all(c.colourfulness > 0 for c in choices if not c.chroma_shrink)
        raw = {
            c.annealed_t: c.colourfulness for c in choices if c.readout == "annealed_mean" and c.calibration == "none"
        }
        assert len(set(raw.values())) == len(raw)  # each temperature is really applied
        for r, t in readouts:  # each shrink is really applied: colour only fades as it grows
            for calibration in calibrations:
                fading = [
                    c.colourfulness for c in choices if (c.readout, c.annealed_t, c.calibration) == (r, t, calibration)
                ]
                assert fading == sorted(fading, reverse=True)
                assert fading[0] > fading[-1]
        shrunk_onnx = tmp_path / "shrunk.onnx"
        export.main([ckpt, str(shrunk_onnx), "--readout", "annealed_mean", "--calibrate", "--chroma_shrink", "3"])
        shrunk_meta = {p.key: p.value for p in onnx.load(str(shrunk_onnx)).metadata_props}
        assert shrunk_meta["colorizer.chroma_shrink"] == "3.0"
        model, _ = export.load_model(ckpt, readout="annealed_mean")
        model.set_calibration(json.loads(shrunk_meta["colorizer.calibration"]))
        assert export.parity(model, shrunk_onnx, 64, batch=4) > 1e-3  # the graph shrinks ...
        model.args.chroma_shrink = 3.0
        assert export.parity(model, shrunk_onnx, 64, batch=4) < 1e-3  # ... as the model does
        gained_onnx = tmp_path / "gain.onnx"
        export.main([ckpt, str(gained_onnx), "--calibrate", "--calibration_form", "gain"])
        m00, m01, m10, m11, *_ = json.loads(
            {p.key: p.value for p in onnx.load(str(gained_onnx)).metadata_props}["colorizer.calibration"]
        )
        assert (m01, m10) == (0, 0)  # one fitted gain for both channels
        assert m00 == m11 != 1
        model, ckpt_dict = export.load_model(ckpt, readout="regression")
        rows = choose_gate.calibration_rows(model, ckpt_dict["config"], str(photo_dir))
        assert [(r.power, r.gain) for r in rows[:1]] == [(0.0, 1.0)]  # the ungated read-out first
        assert [r.power for r in rows[1:]] == list(choose_gate.POWERS)
        kept = [r for r in rows[1:] if r.gain < choose_gate.GAIN_RANGE[1]]
        assert kept  # the gain found for each power gives the ungated colourfulness back
        assert all(abs(r.colourfulness - rows[0].colourfulness) < 0.01 for r in kept)
        assert all(r.gain > 1 for r in rows[1:])  # each power fades something, so each needs a gain to hand it back
        larger = choose_gate.calibration_rows(model, ckpt_dict["config"], str(photo_dir), input_size=96)
        assert larger[0].psnr != rows[0].psnr  # scored at the served size asked for, not the training crop's
        faded = 0.8 * rows[0].colourfulness  # two models are compared at one colourfulness, reached either way
        at_one = choose_gate.calibration_rows(model, ckpt_dict["config"], str(photo_dir), colourfulness=faded)
        assert all(abs(r.colourfulness - faded) < 0.01 for r in at_one[1:])
        assert min(r.gain for r in at_one[1:]) < 1  # a power that fades less than asked is faded further
        best_gate = choose_gate.main([ckpt, "--readout", "regression", "--data_dir", str(photo_dir)])
        assert (best_gate.power, best_gate.gain) == astuple(choose_gate.best_row(rows))[:2]
        gated_onnx = tmp_path / "gated.onnx"
        export.main([ckpt, str(gated_onnx), "--readout", "regression", "--neutral_gate", "2", "--neutral_gain", "1.5"])
        gated_meta = {p.key: p.value for p in onnx.load(str(gated_onnx)).metadata_props}
        assert json.loads(gated_meta["colorizer.neutral_gate"]) == [2.0, 1.5]
        model, _ = export.load_model(ckpt, readout="regression")
        assert export.parity(model, gated_onnx, 64, batch=4) > 1e-3  # the graph gates ...
        model.args.neutral_gate, model.args.neutral_gain = 2.0, 1.5
        assert export.parity(model, gated_onnx, 64, batch=4) < 1e-3  # ... as the model does
        assert gray > 5
        snapshot = str(out / "step2.pt")
        earlier, _ = choose_readout.compare(snapshot, str(photo_dir))
        best = choose_readout.main([ckpt, snapshot, "--data_dir", str(photo_dir)])  # chooses among both
        assert best == choose_readout.best_choice(choices + earlier)
        assert {c.checkpoint for c in choices + earlier} == {ckpt, snapshot}

    if hints:  # the point follow-up's sigmas, swept on the calibration split
        sigmas = choose_point_sigmas.main([str(onnx_path), str(photo_dir)])
        assert sigmas[0] in choose_point_sigmas.SPATIAL
        assert sigmas[1] in choose_point_sigmas.LIGHTNESS
        edges = choose_edges.main([str(onnx_path), str(photo_dir)])  # the edge-aware upsampling's radius and ε
        assert (edges.radius, edges.epsilon) in {(0.0, 0.0)} | set(product(choose_edges.RADII, choose_edges.EPSILONS))
        assert edges.gain > 1 or edges.radius == 0  # the filter smooths colour; the gain it needs hands that back
        # corrections after the network, each at the served colourfulness; a model paired with itself is itself
        rows = corrections.main([str(onnx_path), str(photo_dir), "--with", str(onnx_path)])
        served, *corrected, mirrored, itself = rows
        assert (served.name, served.gain) == ("as served", 1.0)
        assert [r.name for r in corrected] == list(corrections.CORRECTIONS)
        assert mirrored.name == corrections.MIRRORED
        assert abs(mirrored.colourfulness / served.colourfulness - 1) < 0.01
        inside = [r for r in corrected if corrections.GAIN_RANGE[0] < r.gain < corrections.GAIN_RANGE[1] - 0.01]
        assert inside
        assert all(abs(r.colourfulness / served.colourfulness - 1) < 0.01 for r in inside)
        assert abs(itself.gain - 1) < 0.01  # the models' mean, not their sum
        assert abs(itself.psnr - served.psnr) < 0.01
        # the (L, chroma) table: fitted on the training photos, its gain set on calibration, then scored on validation
        with pytest.raises(SystemExit, match="no validation photos"):  # this folder's 13 hash below 0.05 in none
            corrections.main([str(onnx_path), str(photo_dir), "--table", "--validation"])
        split = ["--val_fraction", "0.3"]
        served_here, *_, table, held_served, held_table = corrections.main(
            [str(onnx_path), str(photo_dir), "--table", "--validation", *split]
        )
        assert table.name.startswith("(L, chroma) table from")
        if corrections.GAIN_RANGE[0] < table.gain < corrections.GAIN_RANGE[1] - 0.01:
            assert abs(table.colourfulness / served_here.colourfulness - 1) < 0.01  # the gain: set on calibration
        _, val_names, _ = split_images(str(photo_dir), 0.3, 0.05)
        assert held_served.name == f"validation ({len(val_names)} photos): as served"
        held_out = [evaluate.load_eval_image(str(photo_dir / f)) for f in val_names]
        colourer = evaluate.OnnxColorizer(str(onnx_path))
        as_served = np.mean([evaluate.psnr(colourer(truth), truth) for truth in held_out])
        assert abs(held_served.psnr - as_served) < 1e-6  # the validation photos, coloured as the service colours them
        assert held_table.name.endswith(f"at gain {table.gain:.3f}")
        assert held_table.psnr != held_served.psnr
        # the bound in hindsight: its scale-1 column is the colour as served, and each photo's best is at least that
        model = evaluate.OnnxColorizer(str(onnx_path))
        photos = corrections.automatic_outputs(model, evaluate.calibration_paths(str(photo_dir), 0.05, 0.05))
        for photo, mean in zip(photos, corrections.mirrored_mean(model, photos), strict=True):
            # the mean's other half is the mirror image's ab put back the right way round
            mirror = model.raw_ab(np.ascontiguousarray(photo.truth[:, ::-1]))[0]
            np.testing.assert_allclose(2 * mean.ab - photo.ab, mirror[:, :, ::-1], atol=1e-4)
        bound = corrections.hindsight(photos)
        assert abs(bound.served - served.psnr) < 1e-6
        assert bound.best >= bound.served
        assert len(bound.scales) == len(photos)
        assert set(bound.correlations) == set(corrections.photo_statistics(photos[0]))

    report = tmp_path / "eval"
    evaluate.main([str(onnx_path), str(photo_dir), "--out", str(report), "--limit", "4"])
    table = (report / "EVALUATION.md").read_text()
    assert "gray baseline" in table
    assert ("10 hints" in table) == hints
    assert ("global hint" in table) == hints
    assert (evaluate.PALETTE_MODE in table) == hints
    assert (report / "grid.png").stat().st_size > 1000
    per_photo = (report / "per_photo.csv").read_text().splitlines()
    assert per_photo[0] == "photo,automatic_psnr,gray_psnr,difference,cut_out"
    assert len(per_photo) == 1 + 4
    differences = [float(line.split(",")[3]) for line in per_photo[1:]]
    assert differences == sorted(differences)  # worst against gray first
    drawn = tmp_path / "drawn"
    evaluate.main([str(onnx_path), str(photo_dir), "--split", "train", "--sample", "3", "--out", str(drawn)])
    names = sorted(line.split(",")[0] for line in (drawn / "per_photo.csv").read_text().splitlines()[1:])
    training = evaluate.select_split(sorted(list_images(str(photo_dir))), "train", 0.05, 0.05)
    assert len(names) == 3
    assert set(names) <= set(training)
    assert names != training[:3]  # drawn across the split, not its first files (--limit)
    csv, grid = str(report / "per_photo.csv"), report / "largest_changes.png"
    compare.main([csv, csv, "--models", str(onnx_path), str(onnx_path), "--data_dir", str(photo_dir)])
    assert not grid.exists()
    compare.main(
        [
            csv,
            csv,
            "--models",
            str(onnx_path),
            str(onnx_path),
            "--data_dir",
            str(photo_dir),
            "--grid",
            str(grid),
            "--rows",
            "1",
        ]
    )
    sheet = cv2.imread(str(grid))
    assert sheet.shape == (28 + 160 * 2, 160 * 4, 3)  # one loss and one win (of 4 photos), 4 columns each


def test_the_evaluation_scores_photos_and_cut_outs_apart(photo_dir: Path) -> None:
    assert evaluate.eval_photo(str(photo_dir / "stamp.png"))[1]
    assert not evaluate.eval_photo(str(photo_dir / "sub1" / "p1.png"))[1]
    blank = np.zeros((8, 8, 3), np.uint8)
    scores = [("a", 20.0, 19.0), ("b", 30.0, 32.0), ("c", 22.0, 21.0)]
    kinds = [False, True, False]
    per_photo = [evaluate.PhotoScore(*r, cut) for r, cut in zip(scores, kinds, strict=True)]
    mixed = evaluate.Report({}, 3, blank, None, per_photo)
    table = evaluate.markdown_table(mixed, "m.onnx")
    assert "| photos | 2 | 21.00 | 20.00 |" in table
    assert "| cut-outs on mid-gray | 1 | 30.00 | 32.00 |" in table
    # gains +1, −2, +1: a resample of three −2s comes 1 time in 27 (> 2.5 %) and of three +1s 8 in 27, so the
    # interval runs from the worst photo to the best
    assert "Automatic − gray baseline: +0.00 dB over 3 photos, 95 % bootstrap interval -2.00 to +1.00 dB" in table
    only_photos = evaluate.Report({}, 3, blank, None, [evaluate.PhotoScore(*r, False) for r in scores])
    assert "by kind" not in evaluate.markdown_table(only_photos, "m.onnx")


def test_two_evaluations_compare_photo_by_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = np.zeros((8, 8, 3), np.uint8)
    folder = str(tmp_path)

    def written(name: str, scores: list[tuple[str, float, bool]]) -> str:
        rows = [evaluate.PhotoScore(os.path.join(folder, p), auto, 20.0, cut) for p, auto, cut in scores]
        path = tmp_path / name
        path.write_text(evaluate.per_photo_csv(evaluate.Report({}, len(rows), blank, None, rows), folder))
        return str(path)

    before = written("before.csv", [("a.jpg", 20.0, False), ("b.jpg", 22.0, False), ("c.png", 30.0, True)])
    # the new model gains 1 dB on each photo and loses 3 on the cut-out; "d" is in one file only, so not compared
    after = written(
        "after.csv", [("a.jpg", 21.0, False), ("b.jpg", 23.0, False), ("c.png", 27.0, True), ("d.jpg", 9.0, False)]
    )
    compare.main([before, after])
    table = capsys.readouterr().out
    assert "| photos | 2 | +1.00 | +1.00 to +1.00 |" in table
    assert "| cut-outs on mid-gray | 1 | -3.00 | -3.00 to -3.00 |" in table
    assert "| all | 3 | -0.33 | -3.00 to +1.00 |" in table
    old = {"a": (20.0, False), "b": (22.0, False), "c": (30.0, True), "d": (25.0, False)}
    new = {"a": (21.0, False), "b": (25.0, False), "c": (27.0, True), "d": (24.0, False), "e": (9.0, False)}
    assert compare.largest_changes(old, new, 1) == ["c", "b"]  # the largest loss, then the largest win
    assert compare.largest_changes(old, new, 2) == ["c", "d", "a", "b"]  # all, when there are no more than that


def test_neutral_cast_is_the_chroma_put_where_the_truth_is_neutral() -> None:
    truth = np.full((32, 32, 3), 128, np.uint8)  # a gray wall ...
    truth[:, 16:] = (40, 60, 200)  # ... beside a red one, which does not count
    tinted = truth.copy()
    tinted[:, :16] = (128, 140, 128)  # the wall turned green
    cast = evaluate.neutral_cast(tinted, truth)
    green_chroma = float(np.hypot(*evaluate.bgr_to_lab(tinted)[0, 0, 1:]))
    assert cast == pytest.approx(green_chroma, rel=1e-4)
    assert cast > 5
    assert evaluate.neutral_cast(truth, truth) < 0.1
    assert np.isnan(evaluate.neutral_cast(tinted[:, 16:], truth[:, 16:]))  # no neutral pixel to judge


def test_the_readout_chosen_is_the_best_psnr_within_the_colourfulness_band() -> None:
    from train.choose_readout import Choice, best_choice

    faded = Choice("annealed_mean", 0.5, "none", psnr=24.5, colourfulness=0.42)  # best PSNR, but nearly gray
    vivid = Choice("annealed_mean", 0.25, "none", psnr=24.1, colourfulness=0.61)
    loud = Choice("regression", 0.0, "none", psnr=23.0, colourfulness=1.3)
    assert best_choice([faded, vivid, loud]) == vivid
    assert vivid.flags() == "--readout annealed_mean --annealed_t 0.25"
    shrunk = Choice("annealed_mean", 0.5, "2x2", psnr=24.2, colourfulness=0.55, chroma_shrink=3.0)
    assert best_choice([faded, vivid, shrunk]) == shrunk
    assert shrunk.flags() == "--readout annealed_mean --annealed_t 0.5 --calibrate --chroma_shrink 3"
    assert best_choice([faded, loud]) == faded  # none in the band: the best PSNR
    gained = Choice("regression", 0.0, "gain", psnr=24.3, colourfulness=0.6)
    assert gained.flags() == "--readout regression --calibrate --calibration_form gain"


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(SystemExit):
        parse_config(["--no_such_key", "1"])
    assert parse_config(["--lr", "0.01", "--resume", "false"]).resume is False
    with pytest.raises(SystemExit):
        parse_config(["--eval_every", "50", "--snapshot_every", "75"])  # snapshots are taken at evaluations
    with pytest.raises(SystemExit):
        parse_config(["--head", "regression", "--regression_loss", "l2"])  # only the combined head's term has a choice


def test_cut_outs_are_pasted_on_photos_and_sometimes_on_a_plain_gray_backdrop() -> None:
    from train.data import PLAIN_BACKDROP_SHARE, RandomCrops

    rng = np.random.default_rng(0)
    photo = np.dstack([rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), np.full((96, 96), 255, np.uint8)])
    cutout = np.zeros((64, 64, 4), np.uint8)
    cutout[24:40, 24:40] = (0, 0, 255, 255)  # a red square; the rest transparent
    draws = 400
    for share in (PLAIN_BACKDROP_SHARE, 0.6):
        crops = RandomCrops([photo, cutout], 32, 0.5, seed=1, plain_share=share)
        plain, flat, ramps = 0, 0, 0
        for _ in range(draws):
            bg = crops.backdrop(np.random.default_rng(rng.integers(1 << 30)))[:, :, :3]  # a photo crop keeps its alpha
            assert bg.shape == (32, 32, 3)
            assert bg.dtype == np.uint8
            if (bg == bg[:, :, :1]).all():  # B = G = R everywhere: neutral, ab exactly 0
                plain += 1
                flat += int(bg.max() == bg.min())  # one level, as a cut-out flattened on one colour
                ramps += int(bg.max() - bg.min() >= 4)  # a gentle lightness ramp
        assert 0.5 * share * draws < plain < 1.5 * share * draws
        assert 0.35 * plain < flat < 0.65 * plain  # half flat
        assert ramps > 0.35 * plain  # most of the other half visibly ramped


def test_cutout_share_fixes_the_share_of_draws_that_are_cut_outs() -> None:
    from train.data import RandomCrops

    big_photo = np.full((400, 400, 4), 255, np.uint8)
    small_photo = np.full((100, 100, 4), 255, np.uint8)
    cutout = np.zeros((50, 50, 4), np.uint8)
    cutout[10:40, 10:40] = 255
    images = [big_photo, cutout, small_photo]
    default = RandomCrops(images, 32, 0.5, seed=1)
    assert default.p[1] == pytest.approx(50 / 550)  # √pixels: the small cut-out is drawn rarely
    for share in (0.25, 0.5, 0.9):
        crops = RandomCrops(images, 32, 0.5, seed=1, cutout_share=share)
        assert crops.p[1] == pytest.approx(share)
        assert crops.p[0] / crops.p[2] == pytest.approx(4.0)  # still √-weighted among the photos
    draws = np.random.default_rng(0).choice(3, size=4000, p=RandomCrops(images, 32, 0.5, 1, cutout_share=0.5).p)
    assert 0.45 < (draws == 1).mean() < 0.55


def test_a_warm_restart_starts_a_fresh_cosine_cycle_at_schedule_from_minutes() -> None:
    from train.train import lr_at

    one_cycle = parse_config(["--lr", "1e-3", "--max_minutes", "200", "--max_steps", "100000"])
    assert lr_at(5000, 100, one_cycle) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # halfway down the one cycle
    restart = parse_config(
        ["--lr", "1e-3", "--max_minutes", "200", "--max_steps", "100000", "--schedule_from_minutes", "100"]
    )
    assert lr_at(5000, 100, restart) == pytest.approx(1e-3)  # full rate again where the new cycle starts
    assert lr_at(5000, 150, restart) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert lr_at(5000, 200, restart) == pytest.approx(5e-5)  # fully decayed at the end of the budget


def test_evaluation_splits_are_the_training_runs_splits(tmp_path: Path) -> None:
    for i in range(400):
        (tmp_path / f"photo{i}.png").touch()
    rel = list_images(str(tmp_path))
    train_files, val, calib = split_images(str(tmp_path), 0.05, 0.05)
    assert 5 < len(calib) < 40
    assert evaluate.select_split(rel, "calib", 0.05, 0.05) == calib
    assert evaluate.select_split(rel, "val", 0.05, 0.05) == val
    assert set(evaluate.select_split(rel, "train", 0.05, 0.05)) == set(train_files) | set(calib)
    assert evaluate.select_split(rel, "all", 0.05, 0.05) == rel


@pytest.mark.slow
def test_bf16_precision_trains_under_autocast(photo_dir: Path, tmp_path: Path) -> None:
    """The same seed and batches in fp32 and bf16 give different weights: the flag reaches the forward pass."""

    def one_step(precision: str) -> dict[str, torch.Tensor]:
        args = ["--data_dir", str(photo_dir), "--out_dir", str(tmp_path / precision), "--crop_size", "64"]
        args += ["--width", "8", "--batch_size", "4", "--eval_every", "1", "--workers", "0", "--max_steps", "1"]
        args += ["--cache_dir", str(tmp_path / "cache"), "--warmup_steps", "1", "--precision", precision]
        return torch.load(train(parse_config(args)), weights_only=False)["model"]  # type: ignore[no-any-return]

    fp32, bf16 = one_step("fp32"), one_step("bf16")
    assert all(w.dtype != torch.bfloat16 for w in bf16.values())  # the weights themselves stay fp32
    changed = [k for k in fp32 if fp32[k].is_floating_point() and not torch.equal(fp32[k], bf16[k])]
    assert len(changed) > len(fp32) // 4
    with pytest.raises(SystemExit):
        parse_config(["--precision", "fp16"])


def test_the_weight_average_follows_the_weights_by_its_decay() -> None:
    conv, norm = torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2)
    model = torch.nn.Sequential(conv, norm)
    average = WeightAverage(model, decay=0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        conv.weight.add_(1.0)
        buffers = dict(norm.named_buffers())  # typed Tensor | None as attributes
        buffers["running_mean"].fill_(2.0)
        buffers["num_batches_tracked"].fill_(7)
    average.update(model, step=1000)  # past the warm-up: the decay itself
    state = average.state_dict()
    assert torch.allclose(state["0.weight"], start["0.weight"] + 0.1)  # 0.9 x old + 0.1 x new
    assert torch.allclose(state["1.running_mean"], torch.full((2,), 0.2))  # BatchNorm's statistics are averaged too
    assert int(state["1.num_batches_tracked"]) == 7  # counters are copied, not averaged
    assert average.rate(0) < 0.2 < average.rate(20) < 0.9 == average.rate(10_000)  # the start is soon forgotten


@pytest.mark.slow
def test_stop_step_stops_a_run_in_the_middle_of_its_cosine(photo_dir: Path, tmp_path: Path) -> None:
    common = ["--data_dir", str(photo_dir), "--out_dir", str(tmp_path / "run"), "--crop_size", "64", "--width", "8"]
    common += ["--batch_size", "4", "--eval_every", "1", "--workers", "0", "--warmup_steps", "0"]
    cfg = parse_config([*common, "--max_steps", "6", "--stop_step", "2", "--val_fraction", "0.2"])
    saved = torch.load(train(cfg), weights_only=False)
    assert saved["step"] == 2
    # the last step ran at the rate of step 1 of a 6-step cosine, not at the end of a 2-step one
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr_at(1, 0.0, cfg))
    assert lr_at(1, 0.0, cfg) > lr_at(1, 0.0, parse_config([*common, "--max_steps", "2"]))


@pytest.mark.slow
def test_a_run_with_a_weight_average_writes_it_as_a_model_and_resumes_it(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["--data_dir", str(photo_dir), "--out_dir", str(out), "--crop_size", "64", "--width", "8"]
    common += ["--batch_size", "4", "--eval_every", "1", "--snapshot_every", "1", "--workers", "0"]
    common += ["--val_fraction", "0.2", "--calib_fraction", "0.3", "--warmup_steps", "1", "--ema_decay", "0.5"]
    last = train(parse_config([*common, "--max_steps", "2"]))
    saved = torch.load(last, weights_only=False)
    averaged = torch.load(out / "ema.pt", weights_only=False)
    assert "optimizer" not in averaged
    assert averaged["step"] == 2
    for key, value in saved["ema"].items():
        assert torch.equal(averaged["model"][key], value)  # ema.pt is the average last.pt carries
    moved = [k for k, v in averaged["model"].items() if v.is_floating_point() and not torch.equal(v, saved["model"][k])]
    assert moved  # the average lags the weights
    before = torch.load(out / "ema_step1.pt", weights_only=False)["model"]
    keep = WeightAverage(model=torch.nn.Identity(), decay=0.5).rate(2)
    for key, value in before.items():  # each step moves the average toward the weights by the step's rate
        if value.is_floating_point():
            assert torch.allclose(averaged["model"][key], value.lerp(saved["model"][key], 1 - keep), atol=1e-6)
    model, _ = export.load_model(str(out / "ema.pt"))  # a model like any other checkpoint
    assert torch.equal(model.state_dict()[moved[0]], averaged["model"][moved[0]])
    train(parse_config([*common, "--max_steps", "2"]))  # resumes at its end: no step, one more checkpoint
    resumed = torch.load(last, weights_only=False)
    for key, value in saved["ema"].items():
        assert torch.equal(resumed["ema"][key], value)  # the average resumed, not restarted from the weights


@pytest.mark.slow
def test_a_fine_tune_on_other_crops_trains_on_them_and_exports_at_their_size(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    start = tiny_hint_run(photo_dir, out)
    tuned = str(tmp_path / "ft.pt")
    finetune_hints.main(
        [start, tuned, "--trunk_lr", "1e-3", "--steps", "1", "--cache_dir", str(out), "--crop_size", "96"]
    )
    assert torch.load(tuned, weights_only=False)["config"]["crop_size"] == 96  # what export and choose_gate default to
    onnx_path = tmp_path / "ft.onnx"
    export.main([tuned, str(onnx_path), "--version", "test-crops"])
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["colorizer.input_size"] == "96"
    with pytest.raises(SystemExit):  # the encoder strides by 8
        finetune_hints.main([start, tuned, "--steps", "1", "--cache_dir", str(out), "--crop_size", "100"])


def adam_steps(checkpoint: dict) -> set[float]:
    """The step counts Adam holds for the weights a saved, unfinished fine-tune will resume with."""
    return {float(s["step"]) for s in checkpoint["finetune_resume"]["optimizer"]["state"].values()}


@pytest.mark.slow
def test_a_stopped_fine_tune_resumes_where_it_stopped_and_a_finished_one_is_left_alone(
    photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    start = tiny_hint_run(photo_dir, out)
    tuned = tmp_path / "ft.pt"
    command = [start, str(tuned), "--trunk_lr", "1e-3", "--anchor", "1", "--steps", "4", "--cache_dir", str(out)]
    finetune_hints.main([*command, "--stop_step", "2"])
    stopped = torch.load(tuned, weights_only=False)
    assert stopped["extra"]["finetune_hints"]["steps"] == 2
    assert adam_steps(stopped) == {2.0}
    finetune_hints.main([*command, "--stop_step", "3"])  # the same run: one step more, not three from the start
    resumed = torch.load(tuned, weights_only=False)
    assert resumed["extra"]["finetune_hints"]["steps"] == 3
    assert adam_steps(resumed) == {3.0}  # Adam's moments went on rather than starting again
    group = resumed["finetune_resume"]["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(group["peak_lr"] * 0.5 * (1 + np.cos(np.pi * 2 / 4)))  # the cosine went on
    moved = [
        k for k, v in resumed["model"].items() if v.is_floating_point() and not torch.equal(v, stopped["model"][k])
    ]
    assert moved
    finetune_hints.main(command)
    done = torch.load(tuned, weights_only=False)
    assert done["extra"]["finetune_hints"]["steps"] == 4
    assert "finetune_resume" not in done  # finished: no optimiser state to carry
    written = tuned.stat().st_mtime_ns
    finetune_hints.main(command)  # the budget is spent: nothing to do
    assert tuned.stat().st_mtime_ns == written
    finetune_hints.main([*command, "--lr", "5e-4", "--stop_step", "1"])  # another run's file: started afresh
    assert torch.load(tuned, weights_only=False)["extra"]["finetune_hints"]["steps"] == 1


@pytest.mark.slow
def test_the_recipe_trains_exports_and_scores_and_a_rerun_redoes_only_what_is_missing(
    photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "recipe"
    steps = ["--cycle_steps", "4", "--cycle_stop", "2", "--ft1_steps", "2", "--ft2_steps", "2"]
    flags = [str(out), *steps, "--crop_size", "48", "--served_size", "64", "--version", "test-recipe"]
    flags += ["--data_dir", str(photo_dir), "--width", "8", "--batch_size", "4", "--workers", "0"]
    flags += ["--val_fraction", "0.2", "--calib_fraction", "0.3", "--warmup_steps", "1"]
    onnx_path = recipe.main(flags)
    saved = {name: torch.load(out / name, weights_only=False) for name in ("last.pt", "ft1.pt", "ft2.pt")}
    assert saved["last.pt"]["step"] == 2  # stopped inside its 4-step cosine
    assert saved["last.pt"]["config"]["max_steps"] == 4
    assert saved["ft1.pt"]["extra"]["finetune_hints"]["from"] == str(out / "ema_step2.pt")
    assert [saved[n]["config"]["crop_size"] for n in ("ft1.pt", "ft2.pt")] == [48, 64]
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert (meta["colorizer.version"], meta["colorizer.input_size"]) == ("test-recipe", "64")
    assert json.loads(meta["colorizer.neutral_gate"])[0] == recipe.GATE_POWER
    assert "automatic" in (out / "eval_val" / "EVALUATION.md").read_text()
    written = {p.name: p.stat().st_mtime_ns for p in (out / "ft1.pt", out / "ft2.pt", onnx_path)}
    recipe.main(flags)  # everything done: nothing is redone
    assert {p.name: p.stat().st_mtime_ns for p in (out / "ft1.pt", out / "ft2.pt", onnx_path)} == written
    recipe.main([*flags, "--version", "test-recipe-2"])  # a new version: exported again, nothing retrained
    assert recipe.exported_version(onnx_path) == "test-recipe-2"
    assert (out / "ft2.pt").stat().st_mtime_ns == written["ft2.pt"]
    (out / "ft2.pt").unlink()
    recipe.main(flags)  # the last fine-tune, the export and the scores again; the stages before it kept
    assert (out / "ft1.pt").stat().st_mtime_ns == written["ft1.pt"]
    assert onnx_path.stat().st_mtime_ns > written["colorizer.onnx"]
    stages = [line.split()[-1] for line in (out / "times.log").read_text().splitlines()]
    assert stages[:6] == ["cycle", "ft1", "ft2", "export", "evaluate", "end"]
