"""The colourisation CNN: encoder → global feature extractor → fusion → decoder → ab head.

The model speaks raw Lab: ``forward`` takes L in [0, 100] (and, for a hint model, hints in raw ab) and returns
ab in Lab units, so the exported ONNX graph carries its own normalisation, the decoding of the head and the
calibration fitted after training.

Model 2.0 follows Zhang et al. 2017 (richzhang/colorization-pytorch): U-Net shortcuts from the encoder to the
decoder, a classification head and a regression head trained together (the output is the regression head's),
local point hints as extra input channels beside L, and a global hint (an ab distribution) fused beside the
global feature vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from train.global_features import build_global_extractor

L_CENT, L_NORM, AB_NORM = 50.0, 50.0, 110.0
HEADS = ("classification", "regression", "combined")
READOUTS = ("regression", "annealed_mean")
IDENTITY_CALIBRATION = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]  # row-major 2×2 matrix, then the (a, b) offset


@dataclass
class ModelArgs:
    head: str = "classification"  # "classification", "regression", or "combined" (both; output per ``readout``)
    width: int = 16  # channels of the first encoder layer; later layers are multiples
    global_extractor: str = "compact"
    global_weights: str = ""  # local weights file for a pretrained extractor
    num_bins: int = 0  # Q for the classification head and the global hint; set from the data
    annealed_t: float = 0.38
    fused_channels: int = 256
    skips: bool = False  # U-Net shortcuts from the encoder's H/2 and H/4 stages into the decoder
    hints: bool = False  # take hint_ab, hint_mask (local) and global_hint inputs
    calibration: list[float] = field(default_factory=lambda: list(IDENTITY_CALIBRATION))  # ab ← M·ab + t
    # Which head a combined model's ab comes from: "regression" (colorization-pytorch's choice) or
    # "annealed_mean" (the bins' annealed mean, Zhang et al. 2016). Not learnt, so chosen at export by measurement.
    readout: str = "regression"
    # Soft threshold on the automatic ab's chroma, after the calibration: chroma c becomes max(c - chroma_shrink, 0)
    # in the same hue. Weak casts on neutral surfaces become gray; strong colours lose a little. Chosen at export.
    chroma_shrink: float = 0.0
    # The neutral gate, after the calibration and before the shrink: each automatic pixel's ab times
    # neutral_gain · (1 − p_gray)^neutral_gate, p_gray the classification head's probability (temperature 1) of the
    # bin at the origin. A surface the model itself believes gray (a backdrop, a wall) loses the colour the mean of
    # its guesses gave it, and the gain hands that chroma back to the rest, so the photo's colourfulness stays.
    # 0 = off; needs the classification head. Chosen at export on the calibration split (train.choose_gate).
    neutral_gate: float = 0.0
    neutral_gain: float = 1.0
    # A second path from the local hints into the encoder (HintAdapter), added by train.finetune_hints --adapter to
    # a trained hint model; without bias terms, so it adds exact zeros when there are no hints.
    hint_adapter: bool = False
    # The regression head at the input's resolution S (Zhang et al. 2017 predict ab at full resolution) instead of
    # S/2: a refinement stage at S sees the decoder's S/2 features (upsampled) beside the input L and hints, and adds
    # a correction to the S/2 regression output upsampled bilinearly. Its last layer starts at zero, so it starts as
    # the S/2 model. The bins stay at S/2 (their loss and the gate cost 4× as much at S).
    full_res: bool = False
    # The sizes (each at most the input's) the global branch sees the photo at, its vectors averaged; empty: the
    # input's size alone. Not learnt, so settable after training (train.from_onnx --global_views). Tried on 2.5.2:
    # 96² scored +0.21 dB on the calibration split and −0.09 on validation, so no shipped model uses it
    # (docs/training_history.md, "runs/g").
    global_views: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def shrink_chroma(ab: torch.Tensor, shrink: float) -> torch.Tensor:
    """ab (N, 2, h, w) with each pixel's chroma c moved to max(c - shrink, 0), hue kept (a soft threshold)."""
    chroma = torch.sqrt((ab * ab).sum(dim=1, keepdim=True) + 1e-6)  # the epsilon keeps 0/0 out of gray pixels
    return ab * (F.relu(chroma - shrink) / chroma)


def gate_neutrals(ab: torch.Tensor, logits: torch.Tensor, gray_bin: int, power: float, gain: float) -> torch.Tensor:
    """ab (N, 2, h, w) times gain · (1 − p_gray)^power, p_gray the softmax of logits (N, Q, h, w) at ``gray_bin``."""
    # softmax at one bin, as 1 / Σ exp(z − z_gray): ONNX Runtime's ReduceLogSumExp over the bins took 33 ms for a
    # batch of 4 on one core, this form 4 ms. A logit far above the gray one overflows to inf, and p_gray to 0, its
    # limit. The sum over the bins is a product with a row of ones, not a ReduceSum: ONNX Runtime 1.31's ReduceSum
    # over axis 1 takes a slow path for a batch of one (8.2 ms for one image on one core against 1.1 ms as a MatMul,
    # both 1.25 ms an image in batches of 2 or more), and single images are what the editor sends. A MatMul, not a
    # 1×1 Conv of ones (as fast): bench.quantize quantises Conv and Gemm, and these exponentials span decades.
    exps = torch.exp(logits - logits[:, gray_bin : gray_bin + 1]).flatten(2)  # (N, Q, h·w)
    p_gray = 1 / torch.matmul(logits.new_ones(1, logits.shape[1]), exps).unflatten(2, logits.shape[2:])
    if p_gray.shape[-2:] != ab.shape[-2:]:  # a full-resolution regression read-out: the bins stay at S/2
        p_gray = F.interpolate(p_gray, size=ab.shape[-2:], mode="bilinear", align_corners=False)
    return ab * (gain * (1 - p_gray) ** power)


def area_weights(src: int, dst: int) -> torch.Tensor:
    """(dst, src): each output sample the mean of the input samples it covers, partial ones in proportion
    (OpenCV's INTER_AREA when shrinking). ``R @ x @ R.T`` then resizes an image with two matrix products, which
    every ONNX runtime runs, where an area resize by a fraction has no ONNX operator."""
    if not 0 < dst <= src:
        raise ValueError(f"an area resize shrinks: {src} -> {dst}")
    edges = torch.arange(dst + 1, dtype=torch.float64) * (src / dst)  # output sample i covers [edges[i], edges[i+1])
    left, right = edges[:-1, None], edges[1:, None]
    pixels = torch.arange(src, dtype=torch.float64)[None]
    overlap = (torch.minimum(right, pixels + 1) - torch.maximum(left, pixels)).clamp(min=0)
    return (overlap / (src / dst)).float()


def area_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, H) -> (N, C, size, size) by area; the input itself at its own size."""
    if size == x.shape[-1]:
        return x
    r = area_weights(x.shape[-1], size).to(x)
    return r @ x @ r.T


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3×3 convolution, batch norm, ReLU; padding keeps the size (up to the stride)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Eight 3×3 layers; three stride-2 layers take H×W to H/8×W/8 with ``out`` channels.

    ``forward`` also returns the H/2 (2w channels) and H/4 (4w channels) stage outputs for the shortcuts.
    """

    SKIP_AFTER = (1, 3)  # layer indices whose outputs feed the decoder's shortcuts

    def __init__(self, cin: int, width: int, out: int) -> None:
        super().__init__()
        w = width
        self.layers = nn.Sequential(
            conv(cin, w, 2),  # H/2
            conv(w, 2 * w),
            conv(2 * w, 2 * w, 2),  # H/4
            conv(2 * w, 4 * w),
            conv(4 * w, 4 * w, 2),  # H/8
            conv(4 * w, 8 * w),
            conv(8 * w, 8 * w),
            conv(8 * w, out),
        )

    def forward(
        self, x: torch.Tensor, residuals: dict[int, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``residuals`` (the hint adapter's) are added to the outputs of the layers they are keyed by."""
        skips = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if residuals and i in residuals:
                x = x + residuals[i]
            if i in self.SKIP_AFTER:
                skips.append(x)
        return x, skips  # (N, out, H/8, W/8), [(N, 2w, H/2, W/2), (N, 4w, H/4, W/4)]


class Decoder(nn.Module):
    """Convolutions with two 2× upsamplings, H/8 → H/2 where the heads predict; with ``skips``, each
    upsampled map is concatenated with the encoder's map of the same size before its convolution."""

    def __init__(self, cin: int, width: int, skips: bool) -> None:
        super().__init__()
        w, self.skips = width, skips
        self.inner = conv(cin, 4 * w)
        self.up4 = conv(4 * w + (4 * w if skips else 0), 4 * w)  # at H/4
        self.up2 = conv(4 * w + (2 * w if skips else 0), 2 * w)  # at H/2
        self.out_channels = 2 * w

    def forward(self, x: torch.Tensor, encoder_maps: list[torch.Tensor]) -> torch.Tensor:
        half, quarter = encoder_maps
        x = F.interpolate(self.inner(x), scale_factor=2.0, mode="nearest")  # (N, 4w, H/4, W/4)
        x = self.up4(torch.cat([x, quarter], 1) if self.skips else x)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (N, 4w, H/2, W/2)
        return self.up2(torch.cat([x, half], 1) if self.skips else x)  # (N, 2w, H/2, W/2)


class HintAdapter(nn.Module):
    """A small convolutional path from the local hints (hint_ab / AB_NORM and hint_mask) to the encoder's H/2, H/4
    and H/8 stages, each added to that stage's output through a 1×1 projection that starts at zero (as ControlNet
    adds to a trained network): the points' colours reach the deep layers and the decoder's shortcuts directly,
    where the encoder's first layer alone carried them before.

    Nothing in it has a bias and ReLU keeps zero at zero, so with no local hints it adds exact zeros: the automatic
    output, and the calibration and chroma shrink fitted on it, stay what they were (train.finetune_hints)."""

    STAGES = (1, 3, 5)  # the encoder layers whose outputs it adds to

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.ReLU(inplace=True))

        self.down = nn.ModuleList(
            [
                nn.Sequential(block(3, w, 2), block(w, 2 * w)),  # H/2, as encoder layers 0-1
                nn.Sequential(block(2 * w, 2 * w, 2), block(2 * w, 4 * w)),  # H/4, layers 2-3
                nn.Sequential(block(4 * w, 4 * w, 2), block(4 * w, 8 * w)),  # H/8, layers 4-5
            ]
        )
        projections = [nn.Conv2d(c, c, 1, bias=False) for c in (2 * w, 4 * w, 8 * w)]
        for p in projections:
            nn.init.zeros_(p.weight)
        self.project = nn.ModuleList(projections)

    def forward(self, hints: torch.Tensor) -> list[torch.Tensor]:
        """hints (N, 3, S, S) -> the residuals for the STAGES' outputs."""
        out = []
        for down, project in zip(self.down, self.project, strict=True):
            hints = down(hints)
            out.append(project(hints))
        return out


class FullResolution(nn.Module):
    """ModelArgs.full_res: the regression output at S from the decoder's S/2 features and the input at S.

    The features are squeezed to w/2 channels before they are upsampled: the stage at S then costs a quarter of what
    it would on all 2w (training steps 36 % slower with all 2w, 16 % with w/2: 48.6 against 56.3 images/s, bf16 on
    the 2-core AMX Xeon)."""

    def __init__(self, features: int, inputs: int, width: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(features, width // 2, 1)
        self.refine = conv(width // 2 + inputs, width)
        self.correction = nn.Conv2d(width, 2, 1)
        nn.init.zeros_(self.correction.weight)  # starts as the S/2 output, upsampled
        nn.init.zeros_(self.correction.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias has one

    def forward(self, features: torch.Tensor, inputs: torch.Tensor, half_ab: torch.Tensor) -> torch.Tensor:
        """features (N, F, S/2, S/2), inputs (N, I, S, S), half_ab (N, 2, S/2, S/2) -> (N, 2, S, S)."""
        size = inputs.shape[-2:]
        up = F.interpolate(self.squeeze(features), size=size, mode="nearest")
        smooth = F.interpolate(half_ab, size=size, mode="bilinear", align_corners=False)
        return smooth + self.correction(self.refine(torch.cat([up, inputs], dim=1)))


@dataclass
class HeadOutput:
    logits: torch.Tensor | None  # (N, Q, S/2, S/2) bin logits, for the classification and combined heads
    # (N, 2, S/2, S/2) ab / AB_NORM, for the regression and combined heads; (N, 2, S, S) with ModelArgs.full_res
    ab_norm: torch.Tensor | None


class Fusion(nn.Module):
    """The seed design's fusion: a 1×1 convolution over the encoder's map (N, C, h, w) with the photo's vectors
    (N, V: global features, global hint) tiled beside it, then ReLU. The vectors' part of that convolution is the
    same at every pixel, so it runs as one matrix product per photo, added as a bias, instead of a convolution over
    tiled copies: the same function without two thirds of the layer's work (~5 % of the network's). Checkpoints
    and files from before the split hold the one convolution; loading splits it (split_fusion_weights)."""

    def __init__(self, local_channels: int, vector_channels: int, out_channels: int) -> None:
        super().__init__()
        self.local = nn.Conv2d(local_channels, out_channels, 1)
        self.vectors = nn.Linear(vector_channels, out_channels, bias=False)

    def forward(self, local: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        return F.relu(self.local(local) + self.vectors(vectors)[:, :, None, None])

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        split_fusion_weights(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]


def split_fusion_weights(state: dict, prefix: str) -> None:
    """Rewrite, in place, a state dict's (or an ONNX file's initializers') fusion held as one convolution over the
    local map and the tiled vectors (``<prefix>0.weight`` (C_out, C + V, 1, 1), ``<prefix>0.bias``) as Fusion's
    two parts. The local map has C_out channels (ModelArgs.fused_channels both ways)."""
    weight = state.pop(f"{prefix}0.weight", None)
    if weight is None:
        return
    c = weight.shape[0]
    state[f"{prefix}local.weight"] = weight[:, :c]
    state[f"{prefix}vectors.weight"] = weight[:, c:, 0, 0]
    state[f"{prefix}local.bias"] = state.pop(f"{prefix}0.bias")


class ColorizerNet(nn.Module):
    def __init__(self, args: ModelArgs, bin_centres: torch.Tensor | None = None) -> None:
        super().__init__()
        if args.head not in HEADS:
            raise ValueError(f"unknown head {args.head!r}")
        if args.readout not in READOUTS or (args.readout == "annealed_mean" and args.head == "regression"):
            raise ValueError(f"readout {args.readout!r} does not fit the {args.head} head")
        self.args = args
        c = args.fused_channels
        self.encoder = Encoder(4 if args.hints else 1, args.width, c)
        self.global_features = build_global_extractor(args.global_extractor, c, args.global_weights)
        vector_channels = c  # the global feature vector's, and the global hint's beside it
        if args.hints:
            # The global hint enters beside the global feature vector; all zeros (no hint) maps to a learnt constant.
            self.global_hint = nn.Sequential(nn.Linear(args.num_bins + 1, c), nn.ReLU(inplace=True), nn.Linear(c, c))
            vector_channels += c
        if args.hint_adapter:
            if not args.hints:
                raise ValueError("the hint adapter needs a hint model")
            self.hint_adapter = HintAdapter(args.width)
        self.fusion = Fusion(c, vector_channels, c)
        self.decoder = Decoder(c, args.width, args.skips)
        if bin_centres is None:
            bin_centres = torch.zeros(args.num_bins, 2)
        if bin_centres.shape != (args.num_bins, 2):
            raise ValueError(f"bin centres {tuple(bin_centres.shape)} do not match num_bins={args.num_bins}")
        self.register_buffer("bin_centres", bin_centres.float())  # (Q, 2) ab units
        self.gray_bin = int(bin_centres.norm(dim=1).argmin()) if args.num_bins else -1  # the bin at the origin
        if args.neutral_gate and args.head == "regression":
            raise ValueError("the neutral gate reads the classification head, which a regression model lacks")
        if args.head in ("classification", "combined"):
            self.head = nn.Conv2d(self.decoder.out_channels, args.num_bins, 1)
        if args.head in ("regression", "combined"):
            self.regression = nn.Conv2d(self.decoder.out_channels, 2, 1)
            if args.full_res:
                self.full_res = FullResolution(self.decoder.out_channels, 4 if args.hints else 1, args.width)
        elif args.full_res:
            raise ValueError("full_res is the regression head's; a classification model has none")
        m = args.calibration
        self.register_buffer("calib_weight", torch.tensor([[m[0], m[1]], [m[2], m[3]]]).view(2, 2, 1, 1))
        self.register_buffer("calib_bias", torch.tensor([m[4], m[5]]))

    def set_calibration(self, values: list[float]) -> None:
        """Bake ab ← M·ab + t into the model (row-major M, then t), as fitted by train/calibrate.py."""
        self.args.calibration = [float(v) for v in values]
        m = torch.tensor(self.args.calibration)
        self.calib_weight.copy_(m[:4].view(2, 2, 1, 1))  # type: ignore[operator]
        self.calib_bias.copy_(m[4:])  # type: ignore[operator]

    def drop_corrections(self) -> None:
        """No calibration, neutral gate or chroma shrink: they were fitted to an automatic mode that training is about
        to move (train.finetune_hints); train.choose_readout and train.choose_gate choose them again."""
        self.set_calibration(IDENTITY_CALIBRATION)
        self.args.chroma_shrink = 0.0
        self.args.neutral_gate, self.args.neutral_gain = 0.0, 1.0

    def zero_hints(self, lightness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, _, h, w = lightness.shape
        zeros = lightness.new_zeros
        return zeros(n, 2, h, w), zeros(n, 1, h, w), zeros(n, self.args.num_bins + 1)

    def heads(
        self,
        lightness: torch.Tensor,
        hint_ab: torch.Tensor | None = None,
        hint_mask: torch.Tensor | None = None,
        global_hint: torch.Tensor | None = None,
        all_heads: bool = True,
    ) -> HeadOutput:
        """Raw head outputs for L (N, 1, S, S) and, for a hint model, its hints (zeros where None);
        ``all_heads=False`` skips the head of a combined model its readout does not use (only training needs it)."""
        x = (lightness - L_CENT) / L_NORM  # (N, 1, S, S)
        views = self.args.global_views
        glob = (  # (N, C)
            torch.stack([self.global_features(area_resize(x, v)) for v in views]).mean(dim=0)
            if views
            else self.global_features(x)
        )
        parts = [glob]
        if self.args.hints:
            za, zm, zg = self.zero_hints(lightness)
            hint_ab = za if hint_ab is None else hint_ab
            hint_mask = zm if hint_mask is None else hint_mask
            global_hint = zg if global_hint is None else global_hint
            x = torch.cat([x, hint_ab / AB_NORM, hint_mask], dim=1)  # (N, 4, S, S)
            parts.append(self.global_hint(global_hint))  # (N, C)
        residuals = None
        if hasattr(self, "hint_adapter"):
            residuals = dict(zip(HintAdapter.STAGES, self.hint_adapter(x[:, 1:]), strict=True))
        local, skips = self.encoder(x, residuals)  # (N, C, S/8, S/8)
        fused = self.fusion(local, torch.cat(parts, dim=1))  # (N, C, S/8, S/8)
        y = self.decoder(fused, skips)  # (N, 2w, S/2, S/2)
        ab_norm = None
        if hasattr(self, "regression") and (all_heads or not self.reads_bins):
            ab_norm = self.regression(y)
            if hasattr(self, "full_res"):
                ab_norm = self.full_res(y, x, ab_norm)  # (N, 2, S, S)
        return HeadOutput(
            self.head(y)
            if hasattr(self, "head") and (all_heads or self.reads_bins or self.args.neutral_gate)
            else None,
            ab_norm,
        )

    @property
    def reads_bins(self) -> bool:
        """Whether the output ab is the bins' annealed mean (else the regression head's)."""
        return self.args.head == "classification" or (
            self.args.head == "combined" and self.args.readout == "annealed_mean"
        )

    def read_out(self, out: HeadOutput) -> torch.Tensor:
        """Head output -> the network's own ab in Lab units (N, 2, S/2, S/2), before the automatic corrections."""
        if not self.reads_bins:
            assert out.ab_norm is not None
            return out.ab_norm * AB_NORM
        assert out.logits is not None
        # Annealed mean, with bins on the last axis: ONNX Runtime's CPU softmax is written for the last axis,
        # and this form ran the whole model 2.9x faster than a softmax over axis 1 (docs/PERFORMANCE.md).
        probs = F.softmax(out.logits.permute(0, 2, 3, 1) / self.args.annealed_t, dim=-1)  # (N, h, w, Q)
        centres: torch.Tensor = self.bin_centres  # type: ignore[assignment]  # a registered buffer: (Q, 2)
        return (probs @ centres).permute(0, 3, 1, 2)  # (N, 2, h, w)

    @torch.no_grad()
    def uncorrected_ab(self, lightness: torch.Tensor) -> torch.Tensor:
        """The automatic ab (no hints) before the calibration and the chroma shrink: what they are fitted and
        chosen on (train/calibrate.py, train/choose_readout.py)."""
        return self.read_out(self.heads(lightness, all_heads=False))

    def decode(self, out: HeadOutput, guided: torch.Tensor | None = None) -> torch.Tensor:
        """Head output -> ab in Lab units (N, 2, S/2, S/2), calibrated for automatic colour.

        ``guided`` (N,) is 1 for an image with any hint, else 0. The calibration, neutral gate and chroma shrink
        correct the automatic mode's cast and saturation; an image the user gave colours to keeps the network's own
        answer, which training taught to reproduce them (a global map fitted on automatic output would bend the user's
        colours)."""
        ab = self.read_out(out)
        automatic = ab
        if self.args.calibration != IDENTITY_CALIBRATION:
            automatic = F.conv2d(ab, self.calib_weight, self.calib_bias)  # type: ignore[arg-type]  # ab ← M·ab + t
        if self.args.neutral_gate:
            assert out.logits is not None
            gate = self.args.neutral_gate, self.args.neutral_gain
            automatic = gate_neutrals(automatic, out.logits, self.gray_bin, *gate)
        if self.args.chroma_shrink > 0:
            automatic = shrink_chroma(automatic, self.args.chroma_shrink)
        if automatic is ab or guided is None:
            return automatic
        g = guided.view(-1, 1, 1, 1)
        return g * ab + (1 - g) * automatic

    @staticmethod
    def guided(hint_mask: torch.Tensor | None, global_hint: torch.Tensor | None) -> torch.Tensor | None:
        """(N,) 1 where an image has a local or a global hint, else 0; None without hint inputs."""
        if hint_mask is None or global_hint is None:
            return None
        return torch.clamp(hint_mask.amax(dim=(1, 2, 3)) + global_hint[:, -1], max=1.0)

    def forward(
        self,
        lightness: torch.Tensor,
        hint_ab: torch.Tensor | None = None,
        hint_mask: torch.Tensor | None = None,
        global_hint: torch.Tensor | None = None,
        features_only: bool = False,
    ) -> torch.Tensor | HeadOutput:
        """L (N, 1, S, S) in [0, 100] (+ hints) -> ab (N, 2, S/2, S/2) (S, S with full_res) in Lab units;
        ``features_only`` gives the raw head outputs (so training goes through ``forward`` and DDP syncs its
        gradients)."""
        out = self.heads(lightness, hint_ab, hint_mask, global_hint, all_heads=features_only)
        return out if features_only else self.decode(out, self.guided(hint_mask, global_hint))
