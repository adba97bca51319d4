"""Small models the tests export themselves (random weights, train/'s real export path): one with the three
hint inputs and one 1.0-style model without them, so the service's handling of both is tested whatever
models/colorizer.onnx is."""

from __future__ import annotations

from pathlib import Path

import torch

from train.config import parse_config
from train.export import architecture_name, export_onnx, hint_metadata
from train.model import ColorizerNet, ModelArgs
from train.train import train

# A 10-unit grid over the usual ab range, as train/bins.py would find in photos.
CENTRES = torch.tensor([[a, b] for a in range(-80, 90, 10) for b in range(-80, 90, 10)], dtype=torch.float32)


def export_small_model(path: Path, hints: bool, size: int = 64, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    args = ModelArgs(head="regression", width=4, num_bins=len(CENTRES), hints=hints, skips=hints, fused_channels=32)
    model = ColorizerNet(args, CENTRES).eval()
    if hints:
        # At random init a global hint moves ab by ~0.03, below one 8-bit level; amplify its branch so that a test
        # can see a palette or reference reach the output (trained models respond on their own).
        with torch.no_grad():
            model.global_hint[0].weight.mul_(60)
            model.global_hint[2].weight.mul_(20)
    metadata = {
        "colorizer.input_size": str(size),
        "colorizer.version": f"test-{'hints' if hints else 'auto'}",
        "colorizer.architecture": architecture_name(args),
        "colorizer.trained_on": "nothing: random weights for tests",
        **hint_metadata(model),
    }
    diff = export_onnx(model, path, size, metadata)
    assert diff < 1e-3, diff
    return path


def tiny_hint_run(photo_dir: Path, out: Path, *flags: str) -> str:
    """A 2-step cycle of a small hint model (train.train) on a test's photo folder, split so every split has photos:
    where the fine-tune tests start. The path of its last.pt."""
    common = ["--data_dir", str(photo_dir), "--out_dir", str(out), "--crop_size", "64", "--width", "8"]
    common += ["--batch_size", "4", "--eval_every", "2", "--workers", "0", "--warmup_steps", "1", "--max_steps", "2"]
    common += ["--val_fraction", "0.2", "--calib_fraction", "0.3", "--hint_adapter", "true"]
    return train(parse_config([*common, *flags]))
