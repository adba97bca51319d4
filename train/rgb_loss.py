"""The evaluation's own error, as a training loss: per-photo log MSE in sRGB.

The evaluation scores the mean of per-photo PSNR, i.e. the mean of -10·log10(MSE_i) in RGB. Its gradient weighs each
photo by 1 / MSE_i: a photo that is nearly gray (a cut-out on a plain backdrop, a white animal) counts many times more
than a colourful street, and a faint tint that L1 on ab barely notices costs it several dB. ab L1 weighs every photo
and every lightness alike, so the network learns to tint neutral surfaces a little. This term trains on the metric's
form directly: ab is joined with L and converted to sRGB (OpenCV's float32 Lab, D65), differentiably.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# D65 white and the XYZ -> linear sRGB matrix, as OpenCV's float32 Lab conversion uses them.
_WHITE = (0.950456, 1.0, 1.088754)
_XYZ_TO_RGB = (
    (3.240479, -1.53715, -0.498535),
    (-0.969256, 1.875991, 0.041556),
    (0.055648, -0.204043, 1.057311),
)
_DELTA = 6.0 / 29.0


def _f_inverse(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _DELTA, t**3, 3 * _DELTA**2 * (t - 4.0 / 29.0))


def _srgb_gamma(linear: torch.Tensor) -> torch.Tensor:
    # The linear toe keeps the gradient finite at 0 (x ** (1/2.4) has none there).
    safe = linear.clamp(min=0.0031308)
    return torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * safe ** (1 / 2.4) - 0.055)


def lab_to_rgb(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """L (N, 1, H, W) in [0, 100] and ab (N, 2, H, W) -> sRGB (N, 3, H, W) in [0, 1], clipped to the gamut."""
    fy = (lightness + 16.0) / 116.0
    fx = fy + ab[:, :1] / 500.0
    fz = fy - ab[:, 1:] / 200.0
    xyz = torch.cat([_f_inverse(f) * w for f, w in zip((fx, fy, fz), _WHITE, strict=True)], dim=1)
    matrix = torch.tensor(_XYZ_TO_RGB, dtype=xyz.dtype, device=xyz.device)
    linear = torch.einsum("ij,njhw->nihw", matrix, xyz)
    return _srgb_gamma(linear.clamp(0.0, 1.0))


def log_rgb_mse(lightness: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor, floor: float) -> torch.Tensor:
    """Mean over the batch of ln(MSE_i + floor) in sRGB, at ab's resolution (L is area-averaged down to it).

    ``floor`` caps how much a photo that is already right can weigh (1e-4 is a PSNR of 40 dB): without it a crop of
    plain gray backdrop, where the truth is exactly gray, would take an unbounded weight."""
    # float32 even under bf16 autocast: the cube and the gamma would lose the small errors this term is about
    with torch.autocast(lightness.device.type, enabled=False):
        lightness = F.adaptive_avg_pool2d(lightness.float(), (ab_true.shape[-2], ab_true.shape[-1]))
        pred = lab_to_rgb(lightness, ab_pred.float())
        true = lab_to_rgb(lightness, ab_true.float())
        mse = (pred - true).pow(2).flatten(1).mean(dim=1)
        return torch.log(mse + floor).mean()
