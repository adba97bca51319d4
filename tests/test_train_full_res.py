"""The regression head at the input's resolution (ModelArgs.full_res, Zhang et al. 2017): its shapes, its start as
the half-resolution model upsampled, its targets, its gate, and a tiny full-resolution run trained, fine-tuned,
exported, rebuilt, scored and served over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import decode_png, gray_png, launch, photo_like
from tests.hint_model import tiny_hint_run
from train import choose_gate, choose_readout, evaluate, export, finetune_hints, from_onnx
from train.config import TrainConfig
from train.data import to_sample
from train.model import ColorizerNet, HeadOutput, ModelArgs, gate_neutrals
from train.train import Objective, at_size

CENTRES = torch.tensor([[a, b] for a in range(-40, 50, 10) for b in range(-40, 50, 10)], dtype=torch.float32)


def make(full_res: bool, hints: bool = True) -> ColorizerNet:
    torch.manual_seed(0)
    args = ModelArgs(head="combined", width=8, num_bins=len(CENTRES), skips=True, hints=hints, full_res=full_res)
    return ColorizerNet(args, CENTRES)


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("hints", [False, True])
def test_it_gives_ab_at_the_input_size_and_starts_as_the_half_resolution_output_upsampled(
    batch: int, hints: bool
) -> None:
    model = make(full_res=True, hints=hints).eval()
    half = make(full_res=False, hints=hints).eval()
    missing, unexpected = half.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    assert unexpected
    assert all(k.startswith("full_res.") for k in unexpected)
    lightness = torch.rand(batch, 1, 64, 64) * 100
    with torch.no_grad():
        ab = model(lightness)
        coarse = half(lightness)
    assert isinstance(ab, torch.Tensor)
    assert isinstance(coarse, torch.Tensor)
    assert ab.shape == (batch, 2, 64, 64)
    assert coarse.shape == (batch, 2, 32, 32)
    assert torch.isfinite(ab).all()
    # the correction starts at zero: the half-resolution answer, upsampled bilinearly
    torch.testing.assert_close(ab, F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False))


def test_every_parameter_learns_once_the_correction_has_moved() -> None:
    model = make(full_res=True).train()
    lightness = torch.rand(2, 1, 64, 64) * 100
    mask = (torch.rand(2, 1, 64, 64) < 0.05).float()
    hints = (
        (torch.rand(2, 2, 64, 64) * 80 - 40) * mask,
        mask,
        torch.cat([torch.full((2, 81), 1 / 81), torch.ones(2, 1)], 1),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        out = model(lightness, *hints, features_only=True)
        assert isinstance(out, HeadOutput)
        assert out.ab_norm is not None
        assert out.ab_norm.shape == (2, 2, 64, 64)
        assert out.logits is not None
        assert out.logits.shape == (2, len(CENTRES), 32, 32)
        loss = out.logits.square().mean() + (out.ab_norm - 0.3).square().mean()
        opt.zero_grad()
        loss.backward()
        silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
        if step == 0:  # the refinement's gradient passes through the zero-initialised correction
            assert silent
            assert all(n.startswith(("full_res.squeeze.", "full_res.refine.")) for n in silent)
        else:
            assert silent == []
        opt.step()


def test_the_bins_are_scored_on_the_targets_area_averaged_to_half_and_the_regression_at_full_size() -> None:
    crop = cv2.resize(photo_like(200, 260, seed=4), (64, 64), interpolation=cv2.INTER_AREA)
    sample = to_sample(crop)
    full, half = torch.from_numpy(sample.ab_full)[None], torch.from_numpy(sample.ab)[None]
    logits = torch.randn(1, len(CENTRES), 32, 32)
    assert at_size(full, logits).shape == half.shape
    torch.testing.assert_close(at_size(full, logits), half, atol=1e-3, rtol=0)  # as the data's INTER_AREA halves it
    cfg = TrainConfig(head="combined")
    objective = Objective(cfg, CENTRES, torch.ones(len(CENTRES)))
    ab_norm = torch.randn(1, 2, 64, 64) * 0.2
    loss = objective(HeadOutput(logits, ab_norm), full)
    bins_only = objective(HeadOutput(logits, None), half)
    regression = cfg.regression_weight * F.l1_loss(ab_norm, full / 110)
    torch.testing.assert_close(loss, bins_only + regression, atol=1e-3, rtol=1e-4)


def test_the_gate_reads_the_half_resolution_bins_upsampled_onto_the_full_resolution_colour() -> None:
    ab = torch.full((1, 2, 4, 4), 10.0)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 8.0  # a coloured bin all but certain, except in the top-left quarter ...
    logits[0, 1, 0, 0], logits[0, 0, 0, 0] = 0.0, 8.0  # ... which is all but certainly gray (bin 0)
    gated = gate_neutrals(ab, logits, gray_bin=0, power=1.0, gain=1.0)
    p_gray = F.interpolate(torch.softmax(logits, 1)[:, :1], size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(gated, ab * (1 - p_gray))
    assert gated[0, 0, 0, 0] < 2 < 9 < gated[0, 0, 3, 3]


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(10):
        cv2.imwrite(str(root / f"p{i}.png"), photo_like(160 + 8 * i, 200, seed=i))
    return root


@pytest.mark.slow
def test_a_full_resolution_run_trains_fine_tunes_exports_rebuilds_scores_and_serves(
    photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    ckpt = tiny_hint_run(photo_dir, out, "--full_res", "true")
    start = torch.load(ckpt, weights_only=False)
    assert start["model_args"]["full_res"] is True
    assert start["model"]["full_res.correction.weight"].abs().sum() > 0  # it learnt a correction
    tuned = str(tmp_path / "ft.pt")
    crops = ["--min_crop_fraction", "0.9", "--plain_backdrop_share", "0.6"]
    finetune_hints.main(
        [ckpt, tuned, "--trunk_lr", "1e-3", "--anchor", "1", "--steps", "2", "--cache_dir", str(out), *crops]
    )
    record = torch.load(tuned, weights_only=False)["extra"]["finetune_hints"]
    assert (record["min_crop_fraction"], record["plain_backdrop_share"]) == (0.9, 0.6)
    moved = torch.load(tuned, weights_only=False)["model"]
    changed = moved["full_res.correction.weight"] - start["model"]["full_res.correction.weight"]
    assert changed.abs().sum() > 0  # the fine-tune trains the stage too

    gate = choose_gate.main([tuned, "--readout", "regression", "--data_dir", str(photo_dir)])
    readouts, _ = choose_readout.compare(tuned, str(photo_dir))  # the regression at S, the bins at S/2
    assert {c.readout for c in readouts} == {"regression", "annealed_mean"}
    onnx_path = tmp_path / "full.onnx"
    gating = ["--neutral_gate", str(gate.power or 2), "--neutral_gain", str(gate.gain)]
    export.main([tuned, str(onnx_path), "--readout", "regression", *gating, "--version", "test-full"])
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["colorizer.architecture"].endswith("/fullres")
    model = evaluate.OnnxColorizer(str(onnx_path))
    ab, _ = model.raw_ab(photo_like(100, 120))
    assert ab.shape == (2, 64, 64)  # the contract's [N, 2, S, S]
    rebuilt, _ = from_onnx.rebuild(onnx_path)
    assert rebuilt.args.full_res
    feeds = export.example_inputs(rebuilt.args, 3, 64, seed=2)
    session_ab = model.session.run(["ab"], feeds)[0]
    with torch.no_grad():
        again = rebuilt(*(torch.from_numpy(x) for x in feeds.values()))
    assert np.abs(again.numpy() - session_ab).max() < 1e-3  # type: ignore[union-attr]

    evaluate.main([str(onnx_path), str(photo_dir), "--out", str(tmp_path / "eval"), "--limit", "3"])
    assert "10 hints" in (tmp_path / "eval" / "EVALUATION.md").read_text()

    server = launch(tmp_path, {"COLORIZER_MODEL_PATH": str(onnx_path)})
    try:
        info = httpx.get(server.url + "/model", timeout=30).json()
        assert json.dumps(info).count("fullres") >= 1
        hints = {"points": [{"x": 30, "y": 40, "color": "#c03020"}]}
        for data in ({}, {"hints": json.dumps(hints)}):
            files = {"file": ("gray.png", gray_png(150, 210), "image/png")}
            r = httpx.post(server.url + "/colorize", files=files, data=data, timeout=60)
            assert r.status_code == 200, r.text
            assert decode_png(r.content).shape[:2] == (150, 210)
    finally:
        server.terminate()


def test_a_classification_model_has_no_full_resolution_stage() -> None:
    args = ModelArgs(head="classification", width=8, num_bins=len(CENTRES), full_res=True)
    with pytest.raises(ValueError, match="regression head"):
        ColorizerNet(args, CENTRES)
