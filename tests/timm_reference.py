"""Weights, inputs and an output summary that both our Inception-ResNet-v2 and timm's can be given and compared by.

The one source of truth for tests/data/timm_inception_resnet_v2_reference.txt: tests/test_train_global_features.py
imports it, and the scripts in both timm fixtures' headers import it to run timm's model (so this module needs
nothing but torch; ``import_timm`` imports timm only when those scripts call it). Nothing here draws from a random
generator, whose streams may change between torch versions: the weights come from integer arithmetic alone (exact
everywhere) and the images from float64 sin/cos rounded to float32.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import math
import sys
import types
import zlib
from typing import Any

import torch

# Inputs of the reference: a square batch at the pretrained size and one non-square image.
INPUT_SHAPES = ((2, 3, 299, 299), (1, 3, 331, 257))
PICKED = (100, 333, 512, 777, 1024, 1300, 1535)  # feature indices recorded besides the first 32


def spread(name: str, numel: int) -> torch.Tensor:
    """``numel`` values in [-1, 1), a different sequence per tensor name, uniformly spread.

    Each block of 2¹⁶ elements is h(j) = (a·j² + b·j + c) mod 2¹⁶, j the place in the block: with a even and b odd
    that visits every residue once (a permutation polynomial), and the j² term makes a weight matrix indexed by
    row·columns + column full rank. The plainer sin(k + 0.013·i) would not: sin(α·(row·columns + column) + β) =
    sin(α·column + θ_row) gives rank-2 matrices, every output channel a mix of the same two features. Each block is
    shifted by a different amount, so rows that start 2¹⁶ elements apart differ too.
    """
    k = zlib.crc32(name.encode())
    j = torch.arange(min(numel, 65536), dtype=torch.int64)
    block = (15838 * j * j + (2 * (k % 65536) + 1) * j + k) % 65536  # (min(numel, 2¹⁶),)
    shifts = 40503 * torch.arange(-(-numel // 65536), dtype=torch.int64).unsqueeze(1)  # (blocks, 1)
    h = ((block + shifts) % 65536).flatten()[:numel]
    return h.to(torch.float32) / 32768 - 1  # exact: h has 16 bits


def deterministic_value(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The value of one floating tensor of the state dict, scaled by its role so activations keep their size."""
    u = spread(name, math.prod(shape)).reshape(shape)  # variance 1/3
    if len(shape) == 4:  # convolution weight: He's variance 2/fan_in, so ReLU layers neither shrink nor grow it
        return u * math.sqrt(6 / math.prod(shape[1:]))
    if name.endswith("running_var"):
        return 1 + 0.5 * u  # positive: 0.5 to 1.5
    if name.endswith("bn.weight"):
        return 1 + 0.2 * u
    return 0.2 * u  # batch-norm bias and running_mean, residual convolution bias


def deterministic_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every floating tensor replaced by its deterministic value (integer counters kept)."""
    return {
        name: deterministic_value(name, tuple(t.shape)) if t.is_floating_point() else t for name, t in state.items()
    }


def reference_image(shape: tuple[int, ...]) -> torch.Tensor:
    """A smooth pattern in [-1, 1] (the scale the TensorFlow weights take), different per image and channel."""
    n, c, h, w = shape
    b = torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1)
    ch = torch.arange(c, dtype=torch.float64).view(1, c, 1, 1)
    y = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    x = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    img = torch.sin(0.045 * (ch + 1) * y + 0.7 * b + ch) * torch.cos(0.035 * (3 - ch) * x - 0.02 * y - 0.5 * b)
    return img.to(torch.float32)  # (N, C, H, W)


def input_name(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def summary(features: torch.Tensor) -> dict[str, list[float]]:
    """Per image of pooled features (N, 1536): the first 32 values, those at PICKED, and their mean and std."""
    picked = ",".join(map(str, PICKED))
    out = {}
    for n, f in enumerate(features.double()):
        out[f"{n} features[0:32]"] = f[:32].tolist()
        out[f"{n} features[{picked}]"] = f[list(PICKED)].tolist()
        out[f"{n} mean,std"] = [f.mean().item(), f.std().item()]
    return out


def _stand_in(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return _StandIn(name, (), {})


class _StandIn(type):
    """Any name timm imports from torchvision at import time; inception_resnet_v2 uses none of them."""

    def __getattr__(cls, name: str) -> Any:
        return _stand_in(name)


class _StandInTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] == "torchvision":
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _stand_in  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_timm() -> Any:
    """timm, for the fixture scripts in a scratch venv: its torchvision imports are answered by stand-ins, because
    PyPI's torchvision wheel does not load beside torch 2.13+cpu ("torchvision::nms does not exist")."""
    sys.meta_path.insert(0, _StandInTorchvision())
    import timm  # type: ignore[import-not-found]  # only in the scratch venv

    return timm
