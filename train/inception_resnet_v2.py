"""Inception-ResNet-v2 (Szegedy et al. 2016) as a feature extractor, with timm's module and parameter names.

timm cannot be used here: it imports torchvision, whose PyPI wheel does not load beside the torch 2.13 CPU build.
This definition follows timm 1.0's ``timm/models/inception_resnet_v2.py`` layer for layer, so a timm checkpoint
of ``inception_resnet_v2`` (e.g. the ``tf_in1k`` weights) loads with ``strict=True`` once its classifier
(``classif.weight``, ``classif.bias``) is dropped; tests/data/timm_inception_resnet_v2_state.txt holds timm's own
names and shapes. There is no classifier: ``forward`` returns the 1536-d global-average-pooled features, as
timm's model does with ``num_classes=0``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

NUM_FEATURES = 1536
CLASSIFIER_KEYS = ("classif.weight", "classif.bias")  # timm's 1000-class head, which this model has not


class BatchNormReLU(nn.BatchNorm2d):
    """timm's BatchNormAct2d: the activation lives inside the norm module, so the norm keeps the name ``bn``."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=0.001)  # timm's norm_eps for this model (TensorFlow's default)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class ConvBNReLU(nn.Module):
    """timm's ConvNormAct as this model builds it: bias-free convolution (``conv``), then ``bn`` with ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = BatchNormReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Mixed5b(nn.Module):
    """35×35 stem output: 192 → 320 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvBNReLU(192, 96, 1)
        self.branch1 = nn.Sequential(ConvBNReLU(192, 48, 1), ConvBNReLU(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(
            ConvBNReLU(192, 64, 1), ConvBNReLU(64, 96, 3, padding=1), ConvBNReLU(96, 96, 3, padding=1)
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), ConvBNReLU(192, 64, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block35(nn.Module):
    """Inception-ResNet-A (35×35, 320 channels): a scaled residual."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBNReLU(320, 32, 1)
        self.branch1 = nn.Sequential(ConvBNReLU(320, 32, 1), ConvBNReLU(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(
            ConvBNReLU(320, 32, 1), ConvBNReLU(32, 48, 3, padding=1), ConvBNReLU(48, 64, 3, padding=1)
        )
        self.conv2d = nn.Conv2d(128, 320, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return self.act(out * self.scale + x)


class Mixed6a(nn.Module):
    """Reduction-A: 35×35×320 → 17×17×1088."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = ConvBNReLU(320, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            ConvBNReLU(320, 256, 1), ConvBNReLU(256, 256, 3, padding=1), ConvBNReLU(256, 384, 3, stride=2)
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Block17(nn.Module):
    """Inception-ResNet-B (17×17, 1088 channels): a scaled residual."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBNReLU(1088, 192, 1)
        self.branch1 = nn.Sequential(
            ConvBNReLU(1088, 128, 1),
            ConvBNReLU(128, 160, (1, 7), padding=(0, 3)),
            ConvBNReLU(160, 192, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1088, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        return self.act(out * self.scale + x)


class Mixed7a(nn.Module):
    """Reduction-B: 17×17×1088 → 8×8×2080."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(ConvBNReLU(1088, 256, 1), ConvBNReLU(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(ConvBNReLU(1088, 256, 1), ConvBNReLU(256, 288, 3, stride=2))
        self.branch2 = nn.Sequential(
            ConvBNReLU(1088, 256, 1), ConvBNReLU(256, 288, 3, padding=1), ConvBNReLU(288, 320, 3, stride=2)
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block8(nn.Module):
    """Inception-ResNet-C (8×8, 2080 channels): a scaled residual; the last one has no ReLU."""

    def __init__(self, scale: float = 1.0, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = ConvBNReLU(2080, 192, 1)
        self.branch1 = nn.Sequential(
            ConvBNReLU(2080, 192, 1),
            ConvBNReLU(192, 224, (1, 3), padding=(0, 1)),
            ConvBNReLU(224, 256, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(448, 2080, 1)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        return self.relu(out * self.scale + x)


class InceptionResNetV2(nn.Module):
    """RGB (N, 3, 299, 299), scaled as the weights expect, → pooled features (N, 1536)."""

    num_features = NUM_FEATURES

    def __init__(self) -> None:
        super().__init__()
        self.conv2d_1a = ConvBNReLU(3, 32, 3, stride=2)
        self.conv2d_2a = ConvBNReLU(32, 32, 3)
        self.conv2d_2b = ConvBNReLU(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvBNReLU(64, 80, 1)
        self.conv2d_4a = ConvBNReLU(80, 192, 3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[Block35(scale=0.17) for _ in range(10)])
        self.mixed_6a = Mixed6a()
        self.repeat_1 = nn.Sequential(*[Block17(scale=0.10) for _ in range(20)])
        self.mixed_7a = Mixed7a()
        self.repeat_2 = nn.Sequential(*[Block8(scale=0.20) for _ in range(9)])
        self.block8 = Block8(relu=False)
        self.conv2d_7b = ConvBNReLU(2080, NUM_FEATURES, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))  # (N, 64, 147, 147) at 299
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))  # (N, 192, 71, 71)
        x = self.repeat(self.mixed_5b(self.maxpool_5a(x)))  # (N, 320, 35, 35)
        x = self.repeat_1(self.mixed_6a(x))  # (N, 1088, 17, 17)
        x = self.block8(self.repeat_2(self.mixed_7a(x)))  # (N, 2080, 8, 8)
        return self.conv2d_7b(x)  # (N, 1536, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))  # (N, 1536)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat state dict from a .pth/.bin (torch.save, read with weights_only) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Inception-ResNet-v2 weights file at {path}: check --global_weights")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(
                f"{path} is a safetensors file and the safetensors package is not installed: "
                "pip install safetensors, or save the weights with torch.save as a .pth file"
            ) from err
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have no common type
        raise ValueError(f"{path} is not a PyTorch weights file (torch.load failed: {err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a flat state dict of tensors")
    return state


def load_timm_weights(model: InceptionResNetV2, path: str | Path) -> None:
    """Load a timm ``inception_resnet_v2`` checkpoint: every key must match, except the classifier's, dropped."""
    state = {k: v for k, v in read_state_dict(path).items() if k not in CLASSIFIER_KEYS}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a size mismatch
        raise ValueError(f"{path} does not fit timm's inception_resnet_v2: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path} is not a timm inception_resnet_v2 checkpoint: {len(result.missing_keys)} keys missing "
            f"{result.missing_keys[:3]}, {len(result.unexpected_keys)} unexpected {result.unexpected_keys[:3]}"
        )
