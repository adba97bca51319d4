"""Which model file runs: the int8 one beside the fp32 file, where the CPU multiplies int8 natively, else fp32.

``bench.quantize`` writes ``colorizer.int8.onnx`` next to ``colorizer.onnx`` and records in it the sha256 of the
fp32 file it was made from, so a stale int8 file (the fp32 model was replaced) is never served by accident.
int8 pays only where the CPU has int8 dot-product instructions (VNNI or AMX): 1.55-1.59x fp32's images/s there
at one thread per run, with no measurable loss of colour (models/README.md, "int8"); without them int8 ran slower
than fp32 (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "fp32", "int8"]
INT8_CPU_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # /proc/cpuinfo names of the int8 dot-product units
SOURCE_KEY = "colorizer.quantized_from"  # int8 metadata: sha256 of the fp32 file it was quantised from


class PrecisionError(ValueError):
    """COLORIZER_PRECISION=int8 cannot be honoured; the message says why."""


@dataclass(frozen=True)
class Choice:
    path: Path
    precision: Literal["fp32", "int8"]
    reason: str  # a sentence for GET /model and the start-up log


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read, which means fp32."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def int8_sibling(fp32: Path) -> Path:
    """models/colorizer.onnx -> models/colorizer.int8.onnx"""
    return fp32.with_suffix(".int8.onnx")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def choose(setting: Precision, fp32: Path, on_cpu: bool, flags: set[str], quantized: bool = False) -> Choice:
    """The file to serve, before its provenance is checked (``made_from``). ``on_cpu``: the fp32 model came up on
    the CPU provider; int8 is chosen by itself only there. ``quantized``: the configured file is itself an int8
    file (COLORIZER_MODEL_PATH names one), which then serves as it is."""
    if quantized:
        return Choice(fp32, "int8", "COLORIZER_MODEL_PATH is an int8 file")
    missing = None if int8_sibling(fp32).is_file() else f"there is no {int8_sibling(fp32).name} beside {fp32.name}"
    if setting == "fp32":
        return Choice(fp32, "fp32", "COLORIZER_PRECISION is fp32")
    if setting == "int8":
        if missing:
            raise PrecisionError(f"COLORIZER_PRECISION is int8 but {missing}")
        return Choice(int8_sibling(fp32), "int8", "COLORIZER_PRECISION is int8")
    units = sorted(flags.intersection(INT8_CPU_FLAGS))
    if not on_cpu:
        return Choice(fp32, "fp32", "the model runs on the GPU, which gets the fp32 file")
    if not units:
        return Choice(fp32, "fp32", "this CPU has no int8 dot-product instructions (VNNI or AMX)")
    if missing:
        return Choice(fp32, "fp32", missing)
    return Choice(int8_sibling(fp32), "int8", f"this CPU has {', '.join(units)}")


def made_from(choice: Choice, setting: Precision, fp32: Path, fp32_sha256: str, int8_source: str) -> Choice:
    """``choice`` once the int8 file's SOURCE_KEY (``int8_source``, "" when absent) is checked against the fp32
    file's sha256: a stale int8 file falls back to fp32 under "auto" and stops the start under "int8"."""
    if choice.path == fp32 or int8_source == fp32_sha256:
        return choice
    problem = (
        f"{choice.path.name} was made from another {fp32.name}"
        if int8_source
        else f"{choice.path.name} does not say which fp32 file it was made from"
    ) + "; remake it with python -m bench.quantize"
    if setting == "int8":
        raise PrecisionError(f"COLORIZER_PRECISION is int8 but {problem}")
    return Choice(fp32, "fp32", problem)
