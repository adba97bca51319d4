"""Which model file serves (app/precision.py): the int8 file beside the fp32 one where the CPU has VNNI or AMX and
COLORIZER_PRECISION allows it, never a stale one. Real files: the shipped model, quantised here by bench.quantize."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnx
import pytest

from app.precision import INT8_CPU_FLAGS, Choice, PrecisionError, choose, cpu_flags, int8_sibling, made_from
from bench.quantize import quantize
from tests.conftest import MODEL, Server, decode_png, gray_png, launch, photo_like

VNNI = {"avx2", "avx512_vnni"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped fp32 model and an int8 file quantised from it (calibrated on generated photos)."""
    root = tmp_path_factory.mktemp("precision")
    photos = []
    for i in range(4):
        photos.append(root / f"calib{i}.png")
        cv2.imwrite(str(photos[-1]), photo_like(200, 260, seed=40 + i))
    shutil.copyfile(MODEL, root / "colorizer.onnx")
    quantize(root / "colorizer.onnx", root / "colorizer.int8.onnx", photos)
    return root


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_vnni\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == set()  # not Linux: fp32


def test_auto_serves_int8_only_on_a_cpu_with_int8_dot_products(tmp_path: Path) -> None:
    fp32 = tmp_path / "colorizer.onnx"
    fp32.write_bytes(b"fp32")
    assert choose("auto", fp32, on_cpu=True, flags=VNNI).precision == "fp32"  # no int8 file yet
    assert "no colorizer.int8.onnx" in choose("auto", fp32, True, VNNI).reason
    int8_sibling(fp32).write_bytes(b"int8")
    for flag in INT8_CPU_FLAGS:
        assert choose("auto", fp32, True, {flag}) == Choice(int8_sibling(fp32), "int8", f"this CPU has {flag}")
    assert choose("auto", fp32, True, {"avx2", "fma"}).precision == "fp32"  # AVX2 only (Zen 1)
    assert choose("auto", fp32, on_cpu=False, flags=VNNI).precision == "fp32"  # CUDA runs the fp32 file
    assert choose("fp32", fp32, True, VNNI).precision == "fp32"
    assert choose("int8", fp32, True, set()).precision == "int8"  # told to: even without VNNI
    int8_sibling(fp32).unlink()
    with pytest.raises(PrecisionError, match="no colorizer.int8.onnx"):
        choose("int8", fp32, True, VNNI)


def test_an_int8_file_made_from_another_fp32_file_is_not_served(tmp_path: Path) -> None:
    fp32 = tmp_path / "colorizer.onnx"
    chosen = Choice(int8_sibling(fp32), "int8", "this CPU has avx512_vnni")
    assert made_from(chosen, "auto", fp32, "aa", "aa") == chosen
    fallback = made_from(chosen, "auto", fp32, "aa", "bb")
    assert (fallback.path, fallback.precision) == (fp32, "fp32")
    assert "made from another colorizer.onnx" in fallback.reason
    assert "does not say" in made_from(chosen, "auto", fp32, "aa", "").reason
    with pytest.raises(PrecisionError, match="made from another"):
        made_from(chosen, "int8", fp32, "aa", "bb")


def serve(model_dir: Path, precision: str) -> Server:
    env = {"COLORIZER_MODEL_PATH": str(model_dir / "colorizer.onnx"), "COLORIZER_PRECISION": precision}
    return launch(model_dir, env)


def colourise(server: Server) -> np.ndarray:
    response = httpx.post(server.url + "/colorize", files={"file": ("p.png", gray_png(), "image/png")}, timeout=60)
    assert response.status_code == 200, response.text
    return decode_png(response.content)


def model_and_metric(server: Server) -> tuple[dict[str, object], str]:
    info = httpx.get(server.url + "/model", timeout=10).json()
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    return info, next(line for line in metrics.splitlines() if line.startswith("colorizer_model_info{"))


def test_int8_serves_close_to_fp32_and_says_so(model_dir: Path) -> None:
    servers = [serve(model_dir, "int8"), serve(model_dir, "fp32")]
    try:
        (int8_info, int8_metric), (fp32_info, fp32_metric) = (model_and_metric(s) for s in servers)
        int8_image, fp32_image = (colourise(s) for s in servers)
    finally:
        for s in servers:
            s.terminate()
    assert (int8_info["precision"], fp32_info["precision"]) == ("int8", "fp32")
    assert int8_info["precision_reason"] == "COLORIZER_PRECISION is int8"
    assert str(int8_info["version"]).endswith("-int8")
    assert int8_info["sha256"] != fp32_info["sha256"]
    assert 'precision="int8"' in int8_metric
    assert 'precision="fp32"' in fp32_metric
    lab8, lab32 = (cv2.cvtColor(i, cv2.COLOR_BGR2LAB).astype(np.float32) for i in (int8_image, fp32_image))
    assert np.abs(lab8[..., 0] - lab32[..., 0]).mean() < 0.5  # the photo's own lightness (8-bit rounding apart)
    assert 0 < np.abs(lab8[..., 1:] - lab32[..., 1:]).mean() < 3  # another model, the same colour (uint8 ab units)


def test_auto_follows_the_cpu_and_falls_back_from_a_stale_int8_file(model_dir: Path, tmp_path: Path) -> None:
    server = serve(model_dir, "auto")
    try:
        info, _ = model_and_metric(server)
    finally:
        server.terminate()
    assert info["precision"] == ("int8" if cpu_flags() & set(INT8_CPU_FLAGS) else "fp32")  # this machine's CPU

    stale = tmp_path / "stale"
    stale.mkdir()
    fp32 = onnx.load(str(model_dir / "colorizer.onnx"))
    entry = fp32.metadata_props.add()  # another fp32 file: same graph, other bytes
    entry.key, entry.value = "colorizer.note", "retrained"
    onnx.save(fp32, str(stale / "colorizer.onnx"))
    shutil.copyfile(model_dir / "colorizer.int8.onnx", stale / "colorizer.int8.onnx")
    with pytest.raises(RuntimeError, match="made from another colorizer.onnx"):
        serve(stale, "int8")  # told int8 with a stale file: it does not start, and says why
    if cpu_flags() & set(INT8_CPU_FLAGS):
        server = serve(stale, "auto")
        try:
            info, _ = model_and_metric(server)
        finally:
            server.terminate()
        assert info["precision"] == "fp32"
        assert "made from another" in str(info["precision_reason"])


def test_a_model_path_naming_an_int8_file_is_served_as_int8(model_dir: Path, tmp_path: Path) -> None:
    server = launch(tmp_path, {"COLORIZER_MODEL_PATH": str(model_dir / "colorizer.int8.onnx")})
    try:
        info, metric = model_and_metric(server)
    finally:
        server.terminate()
    assert info["precision"] == "int8"
    assert info["precision_reason"] == "COLORIZER_MODEL_PATH is an int8 file"
    assert 'precision="int8"' in metric


def test_a_bad_precision_setting_stops_the_start(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    with pytest.raises(RuntimeError, match="COLORIZER_PRECISION|precision"):
        start_server(COLORIZER_PRECISION="int4")
