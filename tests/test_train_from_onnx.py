"""train.from_onnx: a shipped ONNX file (BatchNorm folded, the unused head left out) rebuilt as a checkpoint that
matches the file and that train.finetune_hints and train.export take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from train.config import TrainConfig
from train.export import architecture_name, example_inputs, export_onnx, hint_metadata, load_model
from train.finetune_hints import finetune, with_adapter
from train.from_onnx import main, rebuild
from train.model import ColorizerNet, ModelArgs
from train.train import Objective

CENTRES = torch.tensor([[a, b] for a in range(-40, 50, 10) for b in range(-40, 50, 10)], dtype=torch.float32)
SIZE = 32


def trained_looking(adapter: bool, readout: str = "annealed_mean") -> ColorizerNet:
    """A combined hint model read out from its bins, calibrated, gated and shrunk, with BatchNorm statistics
    far from the identity (so folding them matters) and, with ``adapter``, a hint adapter already moved off zero.
    With ``readout="regression"`` the file keeps both heads, the bin head for the gate (as 2.5.0's)."""
    torch.manual_seed(3)
    args = ModelArgs(
        head="combined",
        width=4,
        num_bins=len(CENTRES),
        fused_channels=16,
        skips=True,
        hints=True,
        readout=readout,
        annealed_t=0.5,
        calibration=[2.0, -0.2, 0.9, 1.2, 0.0, 0.0],
        chroma_shrink=3.0,
        neutral_gate=2.0,
        neutral_gain=1.2,
    )
    model = ColorizerNet(args, CENTRES)
    if adapter:
        model = with_adapter(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.2, 3)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-0.5, 0.5)
        if adapter:
            for p in model.hint_adapter.project:
                p.weight.normal_(0, 0.3)
    return model.eval()


def export(model: ColorizerNet, path: Path) -> Path:
    a = model.args
    metadata = {
        "colorizer.input_size": str(SIZE),
        "colorizer.version": "test",
        "colorizer.architecture": architecture_name(a),
        "colorizer.train_steps": "1234",
        "colorizer.head": a.head,
        "colorizer.readout": a.readout,
        "colorizer.annealed_t": str(a.annealed_t),
        "colorizer.calibration": json.dumps(a.calibration),
        "colorizer.chroma_shrink": str(a.chroma_shrink),
        "colorizer.neutral_gate": json.dumps([a.neutral_gate, a.neutral_gain]),
        **hint_metadata(model),
    }
    assert export_onnx(model, path, SIZE, metadata) < 1e-3
    return path


@pytest.mark.parametrize(
    ("adapter", "readout"), [(False, "annealed_mean"), (True, "annealed_mean"), (True, "regression")]
)
def test_the_rebuilt_model_gives_what_the_file_gives_with_and_without_hints(
    tmp_path: Path, adapter: bool, readout: str
) -> None:
    original = trained_looking(adapter, readout)
    path = export(original, tmp_path / "model.onnx")
    model, ckpt = rebuild(path)
    # read out from the bins, the file has no regression head; read out from it and gated, the file has both
    assert model.args.head == ("classification" if readout == "annealed_mean" else "combined")
    assert model.args.readout == readout
    assert model.args.hint_adapter == adapter
    assert ckpt["step"] == 1234
    assert model.args.calibration == original.args.calibration
    assert (model.args.neutral_gate, model.args.neutral_gain) == (2.0, 1.2)
    feeds = example_inputs(model.args, 4, SIZE, seed=5)  # guided samples and an automatic one
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (from_file,) = session.run(["ab"], feeds)
    with torch.no_grad():
        rebuilt = model(*(torch.from_numpy(x) for x in feeds.values()))
    assert np.abs(rebuilt.numpy() - from_file).max() < 1e-3  # type: ignore[union-attr]
    assert np.abs(from_file).max() > 1  # a real answer to compare, not zeros


def test_a_regression_read_out_without_the_gate_has_no_bins_to_rebuild(tmp_path: Path) -> None:
    original = trained_looking(adapter=False, readout="regression")
    original.args.neutral_gate, original.args.neutral_gain = 0.0, 1.0
    with pytest.raises(SystemExit, match="its bins are not in it"):
        rebuild(export(original, tmp_path / "model.onnx"))


def test_the_checkpoint_it_writes_fine_tunes_and_exports_again(tmp_path: Path) -> None:
    path = export(trained_looking(adapter=False), tmp_path / "model.onnx")
    main([str(path), str(tmp_path / "rebuilt.pt")])
    model, ckpt = load_model(str(tmp_path / "rebuilt.pt"))
    model = with_adapter(model)
    centres = torch.from_numpy(ckpt["bins"]["centres"])
    objective = Objective(TrainConfig(head="classification"), centres, torch.ones(len(centres)))
    lightness = torch.rand(2, 1, SIZE, SIZE) * 100
    mask = torch.zeros(2, 1, SIZE, SIZE)
    mask[:, :, 10:12, 10:12] = 1
    hints = [torch.full((2, 2, SIZE, SIZE), 30.0) * mask, mask, torch.zeros(2, len(centres) + 1)]
    batch = [lightness, torch.full((2, 2, SIZE // 2, SIZE // 2), 30.0), *hints]
    assert finetune(model, objective, [batch] * 2, lr=1e-2, seconds=600) == 2
    again = export(model, tmp_path / "again.onnx")
    assert rebuild(again)[0].args.hint_adapter
