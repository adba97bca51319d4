"""The ONNX Runtime session that serves the model (not the model itself: that is train/model.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.config import Settings
from app.guidance import ModelHints
from app.precision import SOURCE_KEY, PrecisionError, choose, cpu_flags, file_sha256, made_from
from app.tuning import Kind, intra_op_threads

log = logging.getLogger(__name__)

HINT_INPUTS = ("hint_ab", "hint_mask", "global_hint")  # a guided model takes all three, or none (DESIGN.md)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ModelLoadError(RuntimeError):
    """The model cannot be served as configured; the message says what to change."""


@dataclass(frozen=True)
class ModelInfo:
    path: str
    sha256: str
    input_size: int
    version: str
    architecture: str
    trained_on: str
    providers: list[str]
    hints: list[str] = field(default_factory=list)  # the hint kinds the model takes: ["local", "global"] or []
    quantized_from: str = ""  # an int8 file: the sha256 of the fp32 file it was made from (app/precision.py)
    precision_reason: str = ""  # why this file serves (app/precision.py)

    @property
    def precision(self) -> str:
        """ "int8" for a file bench.quantize made (it records its source), else "fp32"."""
        return "int8" if self.quantized_from else "fp32"

    @property
    def provider(self) -> str:
        """The provider that runs the model: the first active one."""
        return self.providers[0]


def provider_options(name: str) -> tuple[str, dict[str, str]]:
    """Options chosen deliberately. cuDNN's heuristic, not its exhaustive search: the batcher forms every batch size
    from 1 to the maximum, and an exhaustive search runs once per new shape, which on an H200 held the service at
    37 images/s against 173 with batching off for as long as new sizes kept coming (docs/PERFORMANCE.md, GPU)."""
    if name == CUDA:
        return name, {
            "cudnn_conv_algo_search": "HEURISTIC",
            "arena_extend_strategy": "kSameAsRequested",
            "do_copy_in_default_stream": "1",
        }
    return name, {}


def session_options(threads: int) -> ort.SessionOptions:
    """How the service opens a model; bench/model.py measures under the same options."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # no parallel graph branches: runs overlap (the batcher) and operators split
    return opts


class ModelRuntime:
    """Loads the ONNX file, reads its self-description, and runs batches of L."""

    def __init__(self, path: Path, providers: list[str], require_gpu: bool = False, threads: int = 1) -> None:
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist; set COLORIZER_MODEL_PATH to an ONNX file")
        available = ort.get_available_providers()
        wanted = [p for p in providers if p in available]
        if require_gpu and CUDA not in wanted:
            raise ModelLoadError(
                f"COLORIZER_REQUIRE_GPU is true but ONNX Runtime offers {available} here; "
                "install onnxruntime-gpu with CUDA and cuDNN, or unset COLORIZER_REQUIRE_GPU"
            )
        if not wanted:
            raise ModelLoadError(f"none of COLORIZER_PROVIDERS {providers} is available (have {available})")
        opts = session_options(threads)
        self.intra_op_threads = threads  # per run; app/tuning.py says why half the cores by default
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=[provider_options(p) for p in wanted]
            )
        except Exception as exc:  # ORT raises its own exception types; all mean "cannot load"
            raise ModelLoadError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        active = self.session.get_providers()
        if require_gpu and CUDA not in active:
            raise ModelLoadError(
                f"COLORIZER_REQUIRE_GPU is true but the CUDA provider failed to start (active: {active})"
            )
        if CUDA in wanted and CUDA not in active:
            log.warning("CUDA was requested but ONNX Runtime fell back to %s; check the driver and cuDNN", active)
        meta = self.session.get_modelmeta().custom_metadata_map
        hint_kinds, self.ab_bins = self._hint_spec(path, meta)  # ab_bins: (Q, 2) for a guided model, else None
        self.info = self._describe(path, active, meta, hint_kinds)
        self.input_name = self.session.get_inputs()[0].name
        log.info(
            "model %s (%s, %d px) loaded on %s", self.info.version, self.info.architecture, self.info.input_size, active
        )

    @classmethod
    def from_settings(cls, settings: Settings, cores: int) -> ModelRuntime:
        """The fp32 model, or the int8 file beside it where COLORIZER_PRECISION and the CPU say so. The fp32 file
        loads first either way: its provider (CUDA can fall back to the CPU) and its sha256 decide."""
        threads = intra_op_threads(settings, cores)

        def load(path: Path) -> ModelRuntime:
            return cls(path, settings.provider_names, settings.require_gpu, threads)

        fp32 = settings.model_path
        runtime = load(fp32)
        try:
            choice = choose(
                settings.precision, fp32, runtime.kind == "cpu", cpu_flags(), bool(runtime.info.quantized_from)
            )
            if choice.path != fp32:
                int8 = load(choice.path)
                choice = made_from(choice, settings.precision, fp32, runtime.info.sha256, int8.info.quantized_from)
                runtime = int8 if choice.path != fp32 else runtime
        except PrecisionError as exc:
            raise ModelLoadError(str(exc)) from exc
        runtime.info = dataclasses.replace(runtime.info, precision_reason=choice.reason)
        log.info("serving %s (%s): %s", choice.path.name, runtime.info.precision, choice.reason)
        return runtime

    @property
    def kind(self) -> Kind:
        """The kind of device the model runs on, which picks the defaults in app/tuning.py."""
        return "cuda" if self.info.provider == CUDA else "cpu"

    def _describe(self, path: Path, active: list[str], meta: dict[str, str], hint_kinds: list[str]) -> ModelInfo:
        if "colorizer.input_size" not in meta:
            raise ModelLoadError(f"{path} lacks metadata colorizer.input_size; export it with python -m train.export")
        return ModelInfo(
            path=str(path),
            sha256=file_sha256(path),
            input_size=int(meta["colorizer.input_size"]),
            version=meta.get("colorizer.version", "unknown"),
            architecture=meta.get("colorizer.architecture", "unknown"),
            trained_on=meta.get("colorizer.trained_on", "unknown"),
            providers=active,
            hints=hint_kinds,
            quantized_from=meta.get(SOURCE_KEY, ""),
        )

    def _hint_spec(self, path: Path, meta: dict[str, str]) -> tuple[list[str], np.ndarray | None]:
        """The hint kinds a guided model takes and its bin centres; ([], None) for an automatic-only model."""
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        given = [n for n in HINT_INPUTS if n in shapes]
        if not given:
            return [], None
        if len(given) < len(HINT_INPUTS):
            raise ModelLoadError(f"{path} has hint inputs {given} but not all of {list(HINT_INPUTS)}; re-export it")
        if "colorizer.ab_bins" not in meta:
            raise ModelLoadError(f"{path} takes hints but lacks metadata colorizer.ab_bins; re-export it")
        bins = np.asarray(json.loads(meta["colorizer.ab_bins"]), np.float32)
        width = shapes["global_hint"][1]
        if bins.ndim != 2 or bins.shape[1] != 2 or (isinstance(width, int) and width != len(bins) + 1):
            raise ModelLoadError(f"{path}: colorizer.ab_bins {bins.shape} does not match global_hint width {width}")
        return meta.get("colorizer.hints", "local,global").split(","), bins

    @property
    def takes_hints(self) -> bool:
        return self.ab_bins is not None

    def run(self, lightness: np.ndarray, hints: Sequence[ModelHints | None] = ()) -> np.ndarray:
        """L (N, 1, S, S) float32 in [0, 100] -> ab (N, 2, h, w) float32 in Lab units. A guided model gets each
        item's hints, and zeros (automatic) for an item without them; ``hints`` is empty or one per item."""
        feeds = {self.input_name: lightness}
        if self.takes_hints:
            feeds |= self._hint_feeds(lightness, hints)
        (ab,) = self.session.run(None, feeds)
        return np.asarray(ab, dtype=np.float32)

    def _hint_feeds(self, lightness: np.ndarray, hints: Sequence[ModelHints | None]) -> dict[str, np.ndarray]:
        assert self.ab_bins is not None
        n, _, h, w = lightness.shape
        hint_ab = np.zeros((n, 2, h, w), np.float32)
        mask = np.zeros((n, 1, h, w), np.float32)
        global_hint = np.zeros((n, len(self.ab_bins) + 1), np.float32)
        for i, item in enumerate(hints):
            if item is not None:
                hint_ab[i], mask[i], global_hint[i] = item.hint_ab, item.hint_mask, item.global_hint
        return {"hint_ab": hint_ab, "hint_mask": mask, "global_hint": global_hint}
