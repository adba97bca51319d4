"""The PyTorch model: shapes for several batch sizes, finiteness, gradients, raw-Lab contract, hints, bins."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from train.bins import SoftEncoder, bins_from_counts, count_ab, rebalance_weights, rebalanced_cross_entropy
from train.calibrate import apply, fit
from train.export import export_onnx, parity
from train.model import (
    IDENTITY_CALIBRATION,
    ColorizerNet,
    Fusion,
    HeadOutput,
    ModelArgs,
    gate_neutrals,
    shrink_chroma,
)

CENTRES = torch.tensor([[a, b] for a in range(-40, 50, 10) for b in range(-40, 50, 10)], dtype=torch.float32)
HEADS = ["classification", "regression", "combined"]


def make(head: str, hints: bool = False, skips: bool = False) -> ColorizerNet:
    args = ModelArgs(head=head, width=8, num_bins=len(CENTRES), skips=skips, hints=hints)
    return ColorizerNet(args, CENTRES)


def some_hints(batch: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mask = (torch.rand(batch, 1, size, size) < 0.02).float()  # (N, 1, S, S)
    hint_ab = torch.empty(batch, 2, size, size).uniform_(-60, 60) * mask  # (N, 2, S, S)
    dist = torch.rand(batch, len(CENTRES))
    ghint = torch.cat([dist / dist.sum(1, keepdim=True), torch.ones(batch, 1)], 1)  # (N, Q + 1)
    return hint_ab, mask, ghint


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("hints", [False, True])
def test_shapes_and_finiteness(head: str, batch: int, hints: bool) -> None:
    model = make(head, hints=hints, skips=True).eval()
    lightness = torch.rand(batch, 1, 64, 64) * 100
    with torch.no_grad():
        outs = [model(lightness)]
        if hints:
            outs.append(model(lightness, *some_hints(batch)))
    for ab in outs:
        assert isinstance(ab, torch.Tensor)
        assert ab.shape == (batch, 2, 32, 32)
        assert torch.isfinite(ab).all()


def test_hints_reach_the_output_and_zeros_mean_automatic() -> None:
    model = make("combined", hints=True, skips=True).eval()
    lightness = torch.rand(2, 1, 64, 64) * 100
    hint_ab, mask, ghint = some_hints(2)
    with torch.no_grad():
        auto = model(lightness)
        zeros = model(lightness, torch.zeros_like(hint_ab), torch.zeros_like(mask), torch.zeros_like(ghint))
        local = model(lightness, hint_ab, mask, torch.zeros_like(ghint))
        glob = model(lightness, torch.zeros_like(hint_ab), torch.zeros_like(mask), ghint)
    torch.testing.assert_close(auto, zeros)
    assert not torch.allclose(auto, local)
    assert not torch.allclose(auto, glob)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize(("hints", "skips"), [(False, False), (True, True)])
def test_every_parameter_gets_a_gradient(head: str, hints: bool, skips: bool) -> None:
    model = make(head, hints=hints, skips=skips).train()
    extra = some_hints(2) if hints else ()
    out = model(torch.rand(2, 1, 64, 64) * 100, *extra, features_only=True)
    assert isinstance(out, HeadOutput)
    loss = sum(t.square().mean() for t in (out.logits, out.ab_norm) if t is not None)
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert missing == []


def test_classification_output_stays_inside_the_bin_hull() -> None:
    """Annealed mean is a convex combination of bin centres, so ab stays within their range."""
    model = make("classification").eval()
    with torch.no_grad():
        ab = model(torch.rand(3, 1, 64, 64) * 100)
    assert isinstance(ab, torch.Tensor)
    assert ab.min() >= CENTRES.min() - 1e-4
    assert ab.max() <= CENTRES.max() + 1e-4


def test_a_combined_model_reads_out_from_the_head_its_readout_names() -> None:
    model = make("combined", hints=True, skips=True).eval()
    lightness = torch.rand(2, 1, 64, 64) * 100
    hints = some_hints(2)
    with torch.no_grad():
        heads = model.heads(lightness, *hints)
        assert heads.logits is not None
        assert heads.ab_norm is not None
        by_regression = model(lightness, *hints)
        model.args.readout = "annealed_mean"
        by_bins = model(lightness, *hints)
        model.args.head = "classification"
        classification_alone = model(lightness, *hints)  # the same weights, read as a classification model
    torch.testing.assert_close(by_regression, heads.ab_norm * 110)
    torch.testing.assert_close(by_bins, classification_alone)
    assert not torch.allclose(by_bins, by_regression)
    with pytest.raises(ValueError, match="does not fit the regression head"):
        ColorizerNet(ModelArgs(head="regression", readout="annealed_mean"))


def test_calibration_fit_recovers_an_affine_map_and_is_baked_into_the_model() -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 20, (4, 2, 8, 8))
    values = [0.8, 0.1, -0.2, 1.2, -3.0, 5.0]
    truth = apply(values, pred)
    np.testing.assert_allclose(fit(pred, truth, offset=True), values, atol=1e-6)
    through_origin = fit(pred, apply([0.8, 0.1, -0.2, 1.2, 0, 0], pred))  # the default keeps gray gray
    np.testing.assert_allclose(through_origin, [0.8, 0.1, -0.2, 1.2, 0, 0], atol=1e-6)
    # pure noise: the fit shrinks towards gray and never does worse than a = b = 0
    noise = rng.normal(0, 20, pred.shape)
    fitted = apply(fit(pred, noise), pred)
    assert np.mean((fitted - noise) ** 2) <= np.mean(noise**2)
    # one chroma gain: recovered from a scaled prediction, and the least-squares gain for a rotated one
    np.testing.assert_allclose(fit(pred, 0.7 * pred, form="gain"), [0.7, 0, 0, 0.7, 0, 0], atol=1e-9)
    gain = fit(pred, truth - np.array(values[4:])[None, :, None, None], form="gain")[0]
    assert gain == pytest.approx(np.sum(pred * apply(values[:4] + [0, 0], pred)) / np.sum(pred**2))

    model = make("regression").eval()
    lightness = torch.rand(2, 1, 64, 64) * 100
    with torch.no_grad():
        raw = model(lightness)
        model.set_calibration(values)
        baked = model(lightness)
    assert isinstance(raw, torch.Tensor)
    assert isinstance(baked, torch.Tensor)
    np.testing.assert_allclose(baked.numpy(), apply(values, raw.numpy()), atol=1e-4)


def test_calibration_corrects_automatic_colour_but_leaves_a_guided_image_alone() -> None:
    model = make("combined", hints=True, skips=True).eval()
    lightness = torch.rand(2, 1, 64, 64) * 100
    hint_ab, mask, ghint = some_hints(2)
    mask[1], hint_ab[1], ghint[1] = 0, 0, 0  # image 0 guided, image 1 automatic
    with torch.no_grad():
        raw = model(lightness, hint_ab, mask, ghint)
        model.set_calibration([0.5, 0.0, 0.0, 0.5, 3.0, -3.0])
        out = model(lightness, hint_ab, mask, ghint)
    assert isinstance(raw, torch.Tensor)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out[0], raw[0])  # the user's colours are not bent by the automatic calibration
    np.testing.assert_allclose(out[1:].numpy(), apply([0.5, 0.0, 0.0, 0.5, 3.0, -3.0], raw[1:].numpy()), atol=1e-4)


def test_the_chroma_shrink_turns_weak_casts_gray_keeps_hue_and_leaves_a_guided_image_alone() -> None:
    ab = torch.tensor([[[[3.0, 30.0, 0.0]], [[4.0, -40.0, 0.0]]]])  # (1, 2, 1, 3): chroma 5, 50 and gray
    out = shrink_chroma(ab, 6.0)
    torch.testing.assert_close(out[0, :, 0, 0], torch.zeros(2))  # a cast weaker than the shrink becomes gray
    torch.testing.assert_close(out[0, :, 0, 1], torch.tensor([30.0, -40.0]) * 44 / 50, atol=1e-4, rtol=0)
    torch.testing.assert_close(out[0, :, 0, 2], torch.zeros(2))  # gray stays gray (no 0/0)

    model = make("combined", hints=True, skips=True).eval()
    lightness = torch.rand(2, 1, 64, 64) * 100
    hint_ab, mask, ghint = some_hints(2)
    mask[1], hint_ab[1], ghint[1] = 0, 0, 0  # image 0 guided, image 1 automatic
    calibration = [1.5, 0.0, 0.0, 1.5, 0.0, 0.0]
    with torch.no_grad():
        model.set_calibration(calibration)
        calibrated = model(lightness, hint_ab, mask, ghint)
        model.args.chroma_shrink = 4.0
        out = model(lightness, hint_ab, mask, ghint)
    assert isinstance(calibrated, torch.Tensor)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out[0], calibrated[0])  # the user's colours are not shrunk
    torch.testing.assert_close(out[1:], shrink_chroma(calibrated[1:], 4.0))  # after the calibration


def test_the_neutral_gate_fades_what_the_model_believes_gray_boosts_the_rest_and_leaves_a_guided_image_alone() -> None:
    ab = torch.tensor([[[[8.0, 8.0, 0.0]], [[6.0, 6.0, 0.0]]]])  # (1, 2, 1, 3): the same tan twice, then gray
    logits = torch.zeros(1, 4, 1, 3)
    logits[0, 0, 0, 0] = 5.0  # pixel 0: bin 0 (the gray one here) all but certain
    logits[0, 3, 0, 1] = 5.0  # pixel 1: another bin all but certain
    p_gray = torch.softmax(logits, dim=1)[0, 0, 0]
    out = gate_neutrals(ab, logits, gray_bin=0, power=2.0, gain=1.5)
    torch.testing.assert_close(out[0, :, 0], ab[0, :, 0] * 1.5 * (1 - p_gray[:, None].T) ** 2)
    assert out[0, :, 0, 0].norm() < 0.1 * ab[0, :, 0, 0].norm()  # believed gray: its cast all but gone
    assert out[0, :, 0, 1].norm() > 1.4 * ab[0, :, 0, 1].norm()  # believed coloured: the gain's chroma added
    torch.testing.assert_close(out[0, :, 0, 2], torch.zeros(2))  # gray stays gray

    model = make("combined", hints=True, skips=True).eval()
    assert model.gray_bin == int(CENTRES.norm(dim=1).argmin())
    lightness = torch.rand(2, 1, 64, 64) * 100
    hint_ab, mask, ghint = some_hints(2)
    mask[1], hint_ab[1], ghint[1] = 0, 0, 0  # image 0 guided, image 1 automatic
    with torch.no_grad():
        model.set_calibration([1.5, 0.0, 0.0, 1.5, 0.0, 0.0])
        calibrated = model(lightness, hint_ab, mask, ghint)
        model.args.neutral_gate, model.args.neutral_gain = 2.0, 1.3
        out = model(lightness, hint_ab, mask, ghint)
        logits = model.heads(lightness[1:], all_heads=True).logits
    assert isinstance(calibrated, torch.Tensor)
    assert isinstance(out, torch.Tensor)
    assert logits is not None
    torch.testing.assert_close(out[0], calibrated[0])  # the user's colours are not gated
    torch.testing.assert_close(out[1:], gate_neutrals(calibrated[1:], logits, model.gray_bin, 2.0, 1.3))
    with pytest.raises(ValueError, match="classification head"):
        ColorizerNet(ModelArgs(head="regression", width=8, num_bins=len(CENTRES), neutral_gate=2.0), CENTRES)


def test_the_exported_gate_sums_the_bins_with_a_matrix_product_and_matches_pytorch_for_one_image(
    tmp_path: Path,
) -> None:
    # ONNX Runtime's ReduceSum over the bins ran 8x slower for a batch of one than per image in a batch (the editor
    # sends single images); a MatMul runs as fast at every batch, and bench.quantize leaves MatMul in fp32
    model = make("combined", skips=True).eval()  # no hint inputs: every image is automatic, so every one is gated
    model.args.readout, model.args.neutral_gate, model.args.neutral_gain = "regression", 2.0, 1.3
    path = tmp_path / "gated.onnx"
    metadata = {"colorizer.input_size": "64", "colorizer.version": "test"}
    assert export_onnx(model, path, 64, metadata) < 1e-3
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "ReduceSum" not in ops
    assert "MatMul" in ops
    for batch in (1, 3):
        assert parity(model, path, 64, batch=batch) < 1e-3
    model.args.neutral_gate = 0.0  # and the graph does gate: without the gate PyTorch answers otherwise
    assert parity(model, path, 64, batch=1) > 1e-3


@pytest.mark.parametrize("batch", [1, 3])
def test_the_fusion_is_a_convolution_over_the_map_with_the_vectors_tiled_beside_it(batch: int) -> None:
    fusion = Fusion(8, 12, 8)
    torch.nn.init.normal_(fusion.local.bias)
    local, vectors = torch.randn(batch, 8, 5, 7), torch.randn(batch, 12)
    weight = torch.cat([fusion.local.weight, fusion.vectors.weight[:, :, None, None]], dim=1)  # (8, 20, 1, 1)
    tiled = torch.cat([local, vectors[:, :, None, None].expand(-1, -1, 5, 7)], dim=1)  # the seed design's input
    expected = torch.relu(torch.nn.functional.conv2d(tiled, weight, fusion.local.bias))
    torch.testing.assert_close(fusion(local, vectors), expected)


def test_a_checkpoint_from_before_the_fusions_split_loads_and_gives_the_same_colour() -> None:
    model = make("combined", hints=True, skips=True).eval()
    state = model.state_dict()
    old = {k: v for k, v in state.items() if not k.startswith("fusion.")}  # the fusion as one 1×1 convolution
    old["fusion.0.weight"] = torch.cat(
        [state["fusion.local.weight"], state["fusion.vectors.weight"][..., None, None]], 1
    )
    old["fusion.0.bias"] = state["fusion.local.bias"]
    loaded = make("combined", hints=True, skips=True).eval()
    loaded.load_state_dict(old)  # strict: every key of the split fusion filled
    lightness, hints = torch.rand(2, 1, 64, 64) * 100, some_hints(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(lightness, *hints), model(lightness, *hints))


def test_soft_encoding_and_rebalancing() -> None:
    ab = torch.tensor([[[[3.0, 7.0]], [[-22.0, 41.0]]]])  # (1, 2, 1, 2): pixels (3, -22) and (7, 41)
    bins, targets = SoftEncoder(CENTRES, neighbours=5, sigma=5.0)(ab)
    assert bins.shape == targets.shape == (1, 5, 1, 2)
    torch.testing.assert_close(targets.sum(1), torch.ones(1, 1, 2))
    assert CENTRES[bins[0, 0, 0, 0]].tolist() == [0.0, -20.0]  # the nearest bin first
    assert bool((targets[:, :-1] >= targets[:, 1:]).all())  # nearer bins weigh more
    counts = count_ab([np.array([[[0.0, 0.0], [0.0, 1.0], [20.0, 30.0]]], np.float32)])
    centres, prior = bins_from_counts(counts)
    assert centres.tolist() == [[0.0, 0.0], [20.0, 30.0]]
    np.testing.assert_allclose(prior, [2 / 3, 1 / 3], rtol=1e-6)
    weights = rebalance_weights(centres, prior, lam=0.5, sigma=5.0)
    assert weights[1] > weights[0]  # the rarer colour weighs more
    np.testing.assert_allclose(rebalance_weights(centres, prior, lam=1.0), [1.0, 1.0], rtol=1e-6)  # λ = 1: off
    logits = torch.zeros(1, 2, 1, 1, requires_grad=True)
    loss = rebalanced_cross_entropy(
        logits, torch.zeros(1, 1, 1, 1, dtype=torch.long), torch.ones(1, 1, 1, 1), torch.from_numpy(weights)
    )
    loss.backward()
    assert loss.item() > 0
    assert logits.grad is not None


def test_the_sparse_soft_cross_entropy_equals_the_dense_one() -> None:
    """The loss reads only the k nearest bins; it must equal Zhang et al.'s sum over all Q bins of a dense target."""
    gen = torch.Generator().manual_seed(3)
    ab = torch.randn(2, 2, 6, 5, generator=gen) * 40
    logits = torch.randn(2, len(CENTRES), 6, 5, generator=gen)
    weights = torch.rand(len(CENTRES), generator=gen) + 0.5
    bins, targets = SoftEncoder(CENTRES, neighbours=5, sigma=5.0)(ab)
    dense = torch.zeros_like(logits).scatter_(1, bins, targets)  # (N, Q, H, W)
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    nearest = torch.cdist(flat, CENTRES).argmin(1).reshape(2, 6, 5)
    expected = (-(dense * torch.log_softmax(logits, 1)).sum(1) * weights[nearest]).mean()
    torch.testing.assert_close(rebalanced_cross_entropy(logits, bins, targets, weights), expected)
    channels_last = logits.contiguous(memory_format=torch.channels_last)  # as the model's logits come in training
    torch.testing.assert_close(rebalanced_cross_entropy(channels_last, bins, targets, weights), expected)


def test_the_anchor_is_the_teachers_kl_divergence_over_the_bins_per_pixel() -> None:
    from train.finetune_hints import anchor_loss

    gen = torch.Generator().manual_seed(4)
    student, teacher = (torch.randn(2, len(CENTRES), 6, 5, generator=gen) for _ in range(2))
    p, q = teacher.softmax(1), student.softmax(1)
    expected = (p * (p.log() - q.log())).sum(1).mean()  # KL(teacher ‖ student), summed over the bins, mean over pixels
    for layout in (torch.contiguous_format, torch.channels_last):
        s, t = (x.contiguous(memory_format=layout) for x in (student, teacher))
        torch.testing.assert_close(anchor_loss(HeadOutput(s, None), HeadOutput(t, None), 10.0), expected)


def test_the_soft_encoders_short_lists_pick_the_same_bins_as_measuring_every_bin() -> None:
    """The k nearest bins come from a per-cell list; they must be the k nearest of all Q bins, for any ab."""
    gen = torch.Generator().manual_seed(5)
    centres = torch.tensor([[a, b] for a in range(-120, 130, 10) for b in range(-120, 130, 10)], dtype=torch.float32)
    ab = (torch.rand(1, 2, 400, 500, generator=gen) * 2 - 1) * 127.9  # the whole table, every cell many times
    encode = SoftEncoder(centres, neighbours=5, sigma=5.0)
    assert encode.candidates.shape[1] < len(centres) // 20  # short lists, or there is nothing to gain
    bins, targets = encode(ab)
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    dist = torch.cdist(flat.double(), centres.double())  # (P, Q), every bin
    near_d = dist.topk(5, dim=1, largest=False).values
    expected = torch.exp(-(near_d**2) / 50).float()
    expected = expected / expected.sum(1, keepdim=True)
    picked = dist.gather(1, bins.permute(0, 2, 3, 1).reshape(-1, 5))  # each pick's distance; ties may swap bins
    torch.testing.assert_close(picked, near_d, rtol=0, atol=1e-4)
    torch.testing.assert_close(targets.permute(0, 2, 3, 1).reshape(-1, 5), expected)
    with pytest.raises(ValueError, match="sRGB"):
        encode(torch.full((1, 2, 1, 1), 130.0))


@pytest.mark.parametrize(("regression_loss", "lr", "expected_a"), [("l1", 0.01, 40.0), ("l2", 0.05, 8.0)])
def test_the_regression_loss_picks_the_median_or_the_mean_of_a_two_coloured_object(
    regression_loss: str, lr: float, expected_a: float
) -> None:
    """Six pixels in ten are a = +40, four are a = -40: L1 commits to the majority colour, L2 to their mean."""
    from train.config import TrainConfig
    from train.model import AB_NORM
    from train.train import Objective

    target = torch.zeros(1, 2, 1, 10)
    target[0, 0, 0, :6], target[0, 0, 0, 6:] = 40.0, -40.0
    guess = torch.zeros(1, 2, 1, 1, requires_grad=True)
    objective = Objective(TrainConfig(head="combined", regression_loss=regression_loss), None, None)
    opt = torch.optim.SGD([guess], lr=lr)
    for _ in range(3000):
        opt.zero_grad()
        objective(HeadOutput(logits=None, ab_norm=guess.expand(1, 2, 1, 10)), target).backward()
        opt.step()
    assert float(guess.detach()[0, 0, 0, 0]) * AB_NORM == pytest.approx(expected_a, abs=1.0)


def test_fine_tuning_the_hint_weights_leaves_the_automatic_mode_bit_identical() -> None:
    from train.config import TrainConfig
    from train.finetune_hints import finetune
    from train.train import Objective

    torch.manual_seed(0)
    # channels-last, as finetune runs it: the same weights in another layout give other last bits
    model = make("combined", hints=True, skips=True).to(memory_format=torch.channels_last)
    lightness = torch.rand(3, 1, 64, 64) * 100
    hints = some_hints(3)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.eval()
        auto, guided = model(lightness), model(lightness, *hints)
    cfg = TrainConfig(head="combined", hints=True)
    objective = Objective(cfg, CENTRES, torch.ones(len(CENTRES)))
    batches = [[torch.rand(4, 1, 64, 64) * 100, torch.empty(4, 2, 32, 32).uniform_(-40, 40), *some_hints(4)]] * 5
    assert finetune(model, objective, batches, lr=1e-2, seconds=600) == 5
    with torch.no_grad():
        torch.testing.assert_close(model(lightness), auto, rtol=0, atol=0)  # bit-identical
        assert not torch.allclose(model(lightness, *hints), guided)  # the guided colour did move
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before_state[k])}
    assert changed == {"encoder.layers.0.0.weight", "global_hint.0.weight"}
    first = model.state_dict()["encoder.layers.0.0.weight"]
    assert torch.equal(first[:, :1], before_state["encoder.layers.0.0.weight"][:, :1])  # the L channel kept


def test_a_hint_adapter_starts_as_the_model_and_fine_tunes_without_touching_the_automatic_mode() -> None:
    from train.config import TrainConfig
    from train.finetune_hints import finetune, with_adapter
    from train.train import Objective

    torch.manual_seed(0)
    channels_last = torch.channels_last  # as finetune runs it: another layout gives other last bits
    model = make("classification", hints=True, skips=True).eval().to(memory_format=channels_last)
    lightness = torch.rand(3, 1, 64, 64) * 100
    hints = some_hints(3)
    with torch.no_grad():
        auto, guided = model(lightness), model(lightness, *hints)
        grown = with_adapter(model).eval().to(memory_format=channels_last)
        torch.testing.assert_close(grown(lightness, *hints), guided, rtol=0, atol=0)  # zero projections: no change
    before_state = {k: v.clone() for k, v in grown.state_dict().items()}
    objective = Objective(TrainConfig(head="classification", hints=True), CENTRES, torch.ones(len(CENTRES)))
    batches = [[torch.rand(4, 1, 64, 64) * 100, torch.empty(4, 2, 32, 32).uniform_(-40, 40), *some_hints(4)]] * 4
    saved: list[int] = []
    assert (
        finetune(grown, objective, batches, lr=1e-2, seconds=600, save=lambda p: saved.append(p.step), save_every=0)
        == 4
    )
    assert saved == [1, 2, 3, 4]  # a stopped run keeps what it reached
    with torch.no_grad():
        torch.testing.assert_close(grown(lightness), auto, rtol=0, atol=0)  # no bias in the adapter: exact zeros
        assert not torch.allclose(grown(lightness, *hints), guided)
    changed = {k for k, v in grown.state_dict().items() if not torch.equal(v, before_state[k])}
    adapter = {k for k in grown.state_dict() if k.startswith("hint_adapter.")}
    assert changed == adapter | {"encoder.layers.0.0.weight", "global_hint.0.weight"}  # every adapter weight learnt


def test_a_step_budget_stops_the_finetune_there_and_its_cosine_follows_the_steps() -> None:
    from train.config import TrainConfig
    from train.finetune_hints import budget_spent, finetune
    from train.train import Objective

    torch.manual_seed(0)
    model = make("combined", hints=True, skips=True)
    objective = Objective(TrainConfig(head="combined", hints=True), CENTRES, torch.ones(len(CENTRES)))
    batches = [[torch.rand(4, 1, 64, 64) * 100, torch.empty(4, 2, 32, 32).uniform_(-40, 40), *some_hints(4)]] * 6
    assert finetune(model, objective, batches, lr=1e-2, seconds=600, steps=4) == 4  # 6 batches there, 4 taken
    assert budget_spent(2, 4, elapsed=500.0, seconds=600.0) == 0.5  # the steps, whatever the clock says
    assert budget_spent(2, 0, elapsed=300.0, seconds=600.0) == 0.5  # no step budget: the clock


def test_a_warm_start_with_a_trunk_rate_trains_every_weight_and_moves_the_automatic_mode() -> None:
    from train.config import TrainConfig
    from train.finetune_hints import finetune, parameter_groups, with_adapter
    from train.train import Objective

    torch.manual_seed(0)
    model = with_adapter(make("classification", hints=True, skips=True)).eval()
    model.set_calibration([2.0, -0.1, 1.0, 1.2, 0.0, 0.0])  # as the shipped model's, fitted to its automatic mode
    model.args.chroma_shrink = 3.0
    model.args.neutral_gate, model.args.neutral_gain = 2.0, 1.2
    lightness = torch.rand(3, 1, 64, 64) * 100
    with torch.no_grad():
        auto = model(lightness)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    objective = Objective(TrainConfig(head="classification", hints=True), CENTRES, torch.ones(len(CENTRES)))
    batches = [[torch.rand(4, 1, 64, 64) * 100, torch.empty(4, 2, 32, 32).uniform_(-40, 40), *some_hints(4)]] * 3
    grouped = with_adapter(make("classification", hints=True, skips=True))
    names = [
        {n for n, p in grouped.named_parameters() if any(p is q for q in g["params"])}
        for g in parameter_groups(grouped, 1e-2, 1e-3)
    ]
    assert "encoder.layers.0.0.weight" not in names[0]  # L and the hint channels in one tensor: the trunk's rate
    assert "encoder.layers.0.0.weight" in names[1]
    assert "global_hint.0.weight" in names[0]
    assert {n for n in names[0] if n.startswith("hint_adapter.")} == {
        n for n, _ in grouped.named_parameters() if n.startswith("hint_adapter.")
    }
    assert finetune(model, objective, batches, lr=1e-2, seconds=600, trunk_lr=1e-3, precision="bf16") == 3
    with torch.no_grad():
        assert not torch.allclose(model(lightness), auto)  # the automatic mode trains too
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before_state[k])}
    parameters = {k for k, p in model.named_parameters()}
    assert changed == parameters | {"calib_weight"}  # every weight moves; BatchNorm statistics and bins stay
    # the old automatic mode's corrections are dropped, for train.choose_readout to choose again
    assert model.args.calibration == IDENTITY_CALIBRATION
    assert model.args.chroma_shrink == 0.0
    assert (model.args.neutral_gate, model.args.neutral_gain) == (0.0, 1.0)
    first = model.state_dict()["encoder.layers.0.0.weight"]
    assert not torch.equal(first[:, :1], before_state["encoder.layers.0.0.weight"][:, :1])  # L channel included


def test_an_anchor_holds_the_automatic_mode_near_its_start_while_the_trunk_learns_from_hints() -> None:
    from train.config import TrainConfig
    from train.finetune_hints import finetune, with_adapter
    from train.train import Objective

    torch.manual_seed(0)
    start = with_adapter(make("combined", hints=True, skips=True)).eval()
    lightness = torch.rand(3, 1, 64, 64) * 100
    hints = some_hints(3)
    with torch.no_grad():
        auto, guided = start(lightness), start(lightness, *hints)
    objective = Objective(TrainConfig(head="combined", hints=True), CENTRES, torch.ones(len(CENTRES)))
    batches = [[torch.rand(4, 1, 64, 64) * 100, torch.empty(4, 2, 32, 32).uniform_(-40, 40), *some_hints(4)]] * 6

    def drift(anchor: float) -> tuple[float, float]:
        """(how far the automatic output moved, how far the guided one moved), mean |Δab|, after fine-tuning."""
        model = copy.deepcopy(start)
        assert finetune(model, objective, batches, lr=1e-2, seconds=600, trunk_lr=3e-3, anchor=anchor) == 6
        with torch.no_grad():
            moved_auto = (model(lightness) - auto).abs().mean().item()
            return moved_auto, (model(lightness, *hints) - guided).abs().mean().item()

    free, held = drift(0.0), drift(20.0)
    assert held[0] < free[0] / 2  # the automatic mode stays much closer to where it started
    assert held[1] > 0.1  # while the guided colour still learns (the trunk and the hint path both train)


def test_anchor_to_pulls_the_automatic_colour_towards_another_models_calibrated_output() -> None:
    """The other model's colour as it is served (here its calibration adds a strong red cast, a +25 on a) is the
    target of the anchor term: the student's automatic colour moves to it, far closer than without the anchor."""
    from train.config import TrainConfig
    from train.finetune_hints import finetune
    from train.train import Objective

    torch.manual_seed(1)
    start = make("combined", hints=True, skips=True).eval()
    followed = make("combined", hints=True, skips=True).eval()
    followed.set_calibration([1.0, 0.0, 0.0, 1.0, 25.0, 0.0])
    lightness = torch.rand(3, 1, 64, 64) * 100
    with torch.no_grad():
        target = followed(lightness)
    objective = Objective(TrainConfig(head="combined", hints=True), CENTRES, torch.ones(len(CENTRES)))
    batches = [[torch.rand(4, 1, 64, 64) * 100, torch.empty(4, 2, 32, 32).uniform_(-40, 40), *some_hints(4)]] * 30

    def distance(anchor: float) -> float:
        """Mean |Δab| between the fine-tuned automatic colour and the followed model's."""
        model = copy.deepcopy(start)
        assert finetune(model, objective, batches, 1e-2, 600, trunk_lr=3e-3, anchor=anchor, anchor_to=followed) == 30
        with torch.no_grad():
            return (model(lightness) - target).abs().mean().item()

    free, pulled = distance(0.0), distance(20.0)
    assert pulled < free / 2, (pulled, free)
    assert followed.args.calibration[4] == 25.0  # the followed model is left as it was (not reset like the student)


@pytest.mark.parametrize("head", HEADS)
def test_the_mirrored_teacher_is_its_own_mirror_image(head: str) -> None:
    """The mean of the teacher's heads and its mirror image's, mirrored back, is the same for a photo and for its
    mirror image (mirrored): what --anchor_mirrored distils is symmetric, which a mean of unflipped heads is not."""
    from train.finetune_hints import mirrored_heads

    torch.manual_seed(2)
    teacher = make(head, hints=True, skips=True).eval()
    lightness = torch.rand(2, 1, 64, 64) * 100
    with torch.no_grad():
        plain, mirrored = mirrored_heads(teacher, lightness), mirrored_heads(teacher, lightness.flip(-1))
    for a, b in ((plain.logits, mirrored.logits), (plain.ab_norm, mirrored.ab_norm)):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            torch.testing.assert_close(a, b.flip(-1), atol=1e-4, rtol=1e-4)
    if plain.logits is not None:  # log-probabilities: they sum to one over the bins
        torch.testing.assert_close(plain.logits.exp().sum(1), torch.ones(2, 32, 32), atol=1e-4, rtol=1e-4)


def test_the_bootstrap_interval_of_a_mean_covers_it_and_narrows_with_more_photos() -> None:
    from train.interval import mean_interval

    rng = np.random.default_rng(3)
    few, many = rng.normal(0.2, 1.0, 30), rng.normal(0.2, 1.0, 3000)
    low, high = mean_interval(few)
    assert low < few.mean() < high
    # about ±1.96 σ/√n around the mean: σ/√30 ≈ 0.18, so the interval is 0.6–0.8 dB wide
    assert 0.55 < high - low < 0.85
    low_many, high_many = mean_interval(many)
    assert high_many - low_many < (high - low) / 5  # √100 = 10× narrower, give or take resampling noise
    assert mean_interval(np.full(12, 1.5)) == (1.5, 1.5)
    assert mean_interval(few) == (low, high)  # seeded: the same report twice
