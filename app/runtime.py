"""The ONNX Runtime session that serves the model (not the model itself: that is train/model.py)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.config import Settings
from app.tuning import Kind, intra_op_threads

log = logging.getLogger(__name__)

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

    @property
    def provider(self) -> str:
        """The provider that runs the model: the first active one."""
        return self.providers[0]


def provider_options(name: str) -> tuple[str, dict[str, str]]:
    """Options chosen deliberately: our input shape is fixed, so an exhaustive cuDNN search pays once."""
    if name == CUDA:
        return name, {
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "arena_extend_strategy": "kSameAsRequested",
            "do_copy_in_default_stream": "1",
        }
    return name, {}


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
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_threads = threads  # per run; app/tuning.py says why half the cores by default
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # no parallel graph branches: runs overlap (the batcher) and operators split
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
        self.info = self._describe(path, active)
        self.input_name = self.session.get_inputs()[0].name
        log.info(
            "model %s (%s, %d px) loaded on %s", self.info.version, self.info.architecture, self.info.input_size, active
        )

    @classmethod
    def from_settings(cls, settings: Settings, cores: int) -> ModelRuntime:
        threads = intra_op_threads(settings, cores)
        return cls(settings.model_path, settings.provider_names, settings.require_gpu, threads)

    @property
    def kind(self) -> Kind:
        """The kind of device the model runs on, which picks the defaults in app/tuning.py."""
        return "cuda" if self.info.provider == CUDA else "cpu"

    def _describe(self, path: Path, active: list[str]) -> ModelInfo:
        meta = self.session.get_modelmeta().custom_metadata_map
        if "colorizer.input_size" not in meta:
            raise ModelLoadError(f"{path} lacks metadata colorizer.input_size; export it with python -m train.export")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return ModelInfo(
            path=str(path),
            sha256=digest,
            input_size=int(meta["colorizer.input_size"]),
            version=meta.get("colorizer.version", "unknown"),
            architecture=meta.get("colorizer.architecture", "unknown"),
            trained_on=meta.get("colorizer.trained_on", "unknown"),
            providers=active,
        )

    def run(self, lightness: np.ndarray) -> np.ndarray:
        """L (N, 1, S, S) float32 in [0, 100] -> ab (N, 2, h, w) float32 in Lab units."""
        (ab,) = self.session.run(None, {self.input_name: lightness})
        return np.asarray(ab, dtype=np.float32)
