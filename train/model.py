"""The colourisation CNN: encoder → global feature extractor → fusion → decoder → ab head.

The model speaks raw Lab: ``forward`` takes L in [0, 100] and returns ab in Lab units, so the exported
ONNX graph carries its own normalisation and (for the classification head) the annealed-mean decoding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.global_features import build_global_extractor

L_CENT, L_NORM, AB_NORM = 50.0, 50.0, 110.0


@dataclass
class ModelArgs:
    head: str = "classification"  # "classification" or "regression"
    width: int = 16  # channels of the first encoder layer; later layers are multiples
    global_extractor: str = "compact"
    global_weights: str = ""  # local weights file for a pretrained extractor
    num_bins: int = 0  # Q for the classification head; set from the data
    annealed_t: float = 0.38
    fused_channels: int = 256

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3×3 convolution, batch norm, ReLU; padding keeps the size (up to the stride)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Eight 3×3 layers; three stride-2 layers take H×W to H/8×W/8 with ``out`` channels."""

    def __init__(self, width: int, out: int) -> None:
        super().__init__()
        w = width
        self.layers = nn.Sequential(
            conv(1, w, 2),  # H/2
            conv(w, 2 * w),
            conv(2 * w, 2 * w, 2),  # H/4
            conv(2 * w, 4 * w),
            conv(4 * w, 4 * w, 2),  # H/8
            conv(4 * w, 8 * w),
            conv(8 * w, 8 * w),
            conv(8 * w, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """Convolutions with two 2× upsamplings: H/8 → H/2, where the head predicts."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            conv(cin, 4 * width),
            nn.Upsample(scale_factor=2, mode="nearest"),  # H/4
            conv(4 * width, 4 * width),
            nn.Upsample(scale_factor=2, mode="nearest"),  # H/2
            conv(4 * width, 2 * width),
        )
        self.out_channels = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ColorizerNet(nn.Module):
    def __init__(self, args: ModelArgs, bin_centres: torch.Tensor | None = None) -> None:
        super().__init__()
        self.args = args
        c = args.fused_channels
        self.encoder = Encoder(args.width, c)
        self.global_features = build_global_extractor(args.global_extractor, c, args.global_weights)
        self.fusion = nn.Sequential(nn.Conv2d(2 * c, c, 1), nn.ReLU(inplace=True))
        self.decoder = Decoder(c, args.width)
        if args.head == "classification":
            if bin_centres is None:
                bin_centres = torch.zeros(args.num_bins, 2)
            if bin_centres.shape != (args.num_bins, 2):
                raise ValueError(f"bin centres {tuple(bin_centres.shape)} do not match num_bins={args.num_bins}")
            self.register_buffer("bin_centres", bin_centres.float())  # (Q, 2) ab units
            self.head = nn.Conv2d(self.decoder.out_channels, args.num_bins, 1)
        elif args.head == "regression":
            self.head = nn.Conv2d(self.decoder.out_channels, 2, 1)
        else:
            raise ValueError(f"unknown head {args.head!r}")

    def features(self, lightness: torch.Tensor) -> torch.Tensor:
        """Raw head output: bin logits (N, Q, S/2, S/2) or normalised ab (N, 2, S/2, S/2)."""
        x = (lightness - L_CENT) / L_NORM  # (N, 1, S, S)
        local = self.encoder(x)  # (N, C, S/8, S/8)
        glob = self.global_features(x)  # (N, C)
        tiled = glob[:, :, None, None].expand(-1, -1, local.shape[2], local.shape[3])
        fused = self.fusion(torch.cat([local, tiled], dim=1))  # (N, C, S/8, S/8)
        return self.head(self.decoder(fused))

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Head output -> ab in Lab units (N, 2, S/2, S/2)."""
        if self.args.head == "regression":
            return out * AB_NORM
        # Annealed mean, with bins on the last axis: ONNX Runtime's CPU softmax is written for the last axis, and
        # this form ran the whole model 2.9x faster than a softmax over axis 1 plus an einsum (docs/PERFORMANCE.md).
        probs = F.softmax(out.permute(0, 2, 3, 1) / self.args.annealed_t, dim=-1)  # (N, h, w, Q)
        centres: torch.Tensor = self.bin_centres  # type: ignore[assignment]  # a registered buffer: (Q, 2)
        return (probs @ centres).permute(0, 3, 1, 2)  # (N, 2, h, w)

    def forward(self, lightness: torch.Tensor, features_only: bool = False) -> torch.Tensor:
        """L (N, 1, S, S) in [0, 100] -> ab (N, 2, S/2, S/2); ``features_only`` gives the raw head output
        (so training goes through ``forward`` and DDP syncs its gradients)."""
        out = self.features(lightness)
        return out if features_only else self.decode(out)
