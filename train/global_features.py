"""Global feature extractors: one vector per image, from the same gray input as the encoder.

Both return (N, C) for input x = normalised L of shape (N, 1, H, W), whatever H and W are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CompactGlobal(nn.Module):
    """A small strided CNN trained from scratch with the rest of the model."""

    def __init__(self, out: int) -> None:
        super().__init__()
        chans = [1, 32, 64, 128, 256, out]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(out, out), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).mean(dim=(2, 3)))  # (N, C)


class InceptionResNetGlobal(nn.Module):
    """timm's inception_resnet_v2 as a frozen ImageNet feature extractor, projected to ``out`` channels.

    Weights come from ``weights_path`` (a local file) or, when empty, from timm's own pretrained mechanism
    where the machine can reach its hub.
    """

    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)

    def __init__(self, out: int, weights_path: str = "") -> None:
        super().__init__()
        import timm  # optional: only this extractor needs it

        overlay = {"file": weights_path} if weights_path else None
        self.backbone = timm.create_model(
            "inception_resnet_v2", pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay
        )
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.proj = nn.Sequential(nn.Linear(self.backbone.num_features, out), nn.ReLU(True))
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(self.IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> InceptionResNetGlobal:
        super().train(mode)
        self.backbone.eval()  # frozen: its batch-norm statistics stay ImageNet's
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = ((x + 1) / 2).clamp(0, 1)  # normalised L back to [0, 1]  (N, 1, H, W)
        rgb = F.interpolate(gray, size=(299, 299), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
        with torch.no_grad():
            feats = self.backbone((rgb - self.mean) / self.std)  # (N, 1536)
        return self.proj(feats)


def build_global_extractor(name: str, out: int, weights_path: str = "") -> nn.Module:
    if name == "compact":
        return CompactGlobal(out)
    if name == "inception_resnet_v2":
        return InceptionResNetGlobal(out, weights_path)
    raise ValueError(f"unknown global extractor {name!r}: use compact or inception_resnet_v2")
