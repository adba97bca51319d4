"""Global feature extractors: one vector per image, from the same gray input as the encoder.

Both return (N, C) for input x = normalised L of shape (N, 1, H, W), whatever H and W are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.inception_resnet_v2 import InceptionResNetV2, load_timm_weights


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
    """Inception-ResNet-v2 as a frozen ImageNet feature extractor, projected to ``out`` channels.

    The network is our own definition with timm's parameter names (train/inception_resnet_v2.py); its weights come
    from ``weights_path``, a local timm ``inception_resnet_v2`` checkpoint. Nothing is downloaded.
    """

    def __init__(self, out: int, weights_path: str = "") -> None:
        super().__init__()
        if not weights_path:
            raise ValueError(
                "the inception_resnet_v2 global extractor needs ImageNet weights from a local file: pass "
                "--global_weights PATH to a timm inception_resnet_v2 checkpoint (e.g. the tf_in1k weights); "
                "nothing is downloaded"
            )
        self.backbone = InceptionResNetV2()
        load_timm_weights(self.backbone, weights_path)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.proj = nn.Sequential(nn.Linear(self.backbone.num_features, out), nn.ReLU(True))

    def train(self, mode: bool = True) -> InceptionResNetGlobal:
        super().train(mode)
        self.backbone.eval()  # frozen: its batch-norm statistics stay ImageNet's
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The TensorFlow-trained weights take RGB in [-1, 1] (timm's IMAGENET_INCEPTION_MEAN and _STD are 0.5),
        # the scale normalised L already has: the gray input is L repeated over three channels.
        gray = F.interpolate(x.clamp(-1, 1), size=(299, 299), mode="bilinear", align_corners=False)  # (N, 1, 299, 299)
        with torch.no_grad():
            feats = self.backbone(gray.expand(-1, 3, -1, -1))  # (N, 1536)
        return self.proj(feats)


def build_global_extractor(name: str, out: int, weights_path: str = "") -> nn.Module:
    if name == "compact":
        return CompactGlobal(out)
    if name == "inception_resnet_v2":
        return InceptionResNetGlobal(out, weights_path)
    raise ValueError(f"unknown global extractor {name!r}: use compact or inception_resnet_v2")
