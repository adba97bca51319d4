"""The model alone in ONNX Runtime: throughput and latency by batch size and intra-op threads, fp32 against int8
side by side in one process, achieved GFLOP/s against the CPU's peak, and the fp16 conversion (for GPUs)
checked for correctness on the CPU.

    .venv/bin/python -m bench.model                  # full run (~2 min)
    .venv/bin/python -m bench.model --quick          # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from app import runtime
from app.pipeline import prepare
from bench.common import (
    INT8_MODEL,
    MODEL,
    ROOT,
    batch_of,
    cpu_ghz,
    model_feeds,
    photo_jpeg,
    repeat,
    save,
    split_photos,
    stats,
)
from bench.quantize import model_size, service_lightness

CPU = [runtime.CPU]  # the provider every measurement here runs on unless told
CHECKPOINT = ROOT / "runs" / "default" / "last.pt"


def session(
    path: Path | bytes, threads: int, providers: list[Any] | None = None, profile_prefix: str = ""
) -> ort.InferenceSession:
    """The service's options (app/runtime.py) with the thread count under test; the CPU provider unless told;
    ONNX Runtime's profiler on, writing under ``profile_prefix``, when one is given."""
    opts = runtime.session_options(threads)
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=providers or CPU)


def sample_inputs(size: int, count: int = 16) -> np.ndarray:
    """(count, 1, S, S) L from real validation photos where present, else from photo-like JPEGs."""
    photos = split_photos(limit=count)
    if photos:
        items = [service_lightness(p, size)[0] for p in photos]
    else:
        items = [prepare(photo_jpeg(640, 480, seed=i), size, 10**9).small_l for i in range(count)]
    while len(items) < count:
        items += items[: count - len(items)]
    return np.stack(items).astype(np.float32)


# ---------------------------------------------------------------- work per image


def conv_macs(path: Path) -> dict[str, Any]:
    """Multiply-accumulates per image, from the graph: 2·Cin/groups·Cout·k²·Hout·Wout FLOP for each Conv, with
    the output shapes read from a real run of a copy of the graph that exposes every Conv output."""
    model = onnx.load(str(path))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for node in convs:
        model.graph.output.add(name=node.output[0])
    sess = ort.InferenceSession(model.SerializeToString(), providers=CPU)
    size = model_size(path)
    outputs = sess.run([n.output[0] for n in convs], model_feeds(sess, np.full((1, 1, size, size), 50, np.float32)))
    layers = []
    for node, out in zip(convs, outputs, strict=True):
        cout, cin_per_group, kh, kw = weights[node.input[1]]
        _, _, hout, wout = out.shape
        layers.append({"name": node.name, "macs": cout * cin_per_group * kh * kw * hout * wout})
    gemm = sum(
        int(np.prod(weights[n.input[1]])) for n in model.graph.node if n.op_type == "Gemm" and n.input[1] in weights
    )
    total = sum(layer["macs"] for layer in layers)
    return {"conv_macs": total, "gemm_macs": gemm, "gflop_per_image": 2 * total / 1e9, "layers": layers}


def peak_gflops(cores: int) -> dict[str, Any]:
    """AVX2 FMA peak as the issue defines it: 2 FMA units × 8 fp32 lanes × 2 FLOP × GHz × cores."""
    ghz = cpu_ghz()
    return {
        "ghz": ghz,
        "cores": cores,
        "formula": "2 FMA units × 8 fp32 lanes × 2 FLOP × GHz × cores",
        "peak_gflops": 2 * 8 * 2 * ghz * cores,
        # Zen 1 (family 23 model 1) splits each 256-bit FMA into two 128-bit halves: half the formula's peak.
        "zen1_peak_gflops": 2 * 4 * 2 * ghz * cores,
    }


# ---------------------------------------------------------------- throughput


def sweep(
    models: dict[str, Path | bytes], batches: list[int], threads: list[int], min_time: float, data: np.ndarray
) -> list[dict[str, Any]]:
    """Every (threads, batch) for every model; the models alternate inside each setting, so slow drifts of the
    machine (thermal, a neighbour) hit all of them alike."""
    rows = []
    for n_threads in threads:
        sessions = {name: session(path, n_threads) for name, path in models.items()}
        for batch in batches:
            x = batch_of(data, batch)  # (N, 1, S, S)
            for name, sess in sessions.items():
                for _ in range(2):  # warm-up: arenas, kernel choice
                    sess.run(None, model_feeds(sess, x))
                feeds = model_feeds(sess, x)
                times = repeat(partial(sess.run, None, feeds), min_time, min_runs=5)
                row = {"model": name, "threads": n_threads, "batch": batch, **stats(times)}
                row["images_per_s"] = batch * len(times) / sum(times)
                rows.append(row)
                print(
                    f"{name:>13} threads={n_threads} batch={batch:>2}: {row['images_per_s']:7.1f} img/s, "
                    f"p50 {row['p50_ms']:7.2f} ms/batch"
                )
    return rows


def torch_eager(checkpoint: Path, batches: list[int], threads: list[int], min_time: float, data: np.ndarray) -> list:
    """The same network in PyTorch eager, as bench/naive_server.py runs it: the reference ORT has to beat."""
    import torch

    from train.export import load_model

    model, _ = load_model(str(checkpoint))
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch in batches:
            x = torch.from_numpy(batch_of(data, batch))
            with torch.inference_mode():
                for _ in range(2):
                    model(x)
                times = repeat(partial(model, x), min_time, min_runs=5)
            row = {"model": "torch-eager", "threads": n_threads, "batch": batch, **stats(times)}
            row["images_per_s"] = batch * len(times) / sum(times)
            rows.append(row)
            print(f"torch-eager threads={n_threads} batch={batch:>2}: {row['images_per_s']:7.1f} img/s")
    return rows


def op_profile(models: dict[str, Path | bytes], data: np.ndarray, batch: int = 4, runs: int = 10) -> dict[str, dict]:
    """ONNX Runtime's own profile: milliseconds per run by operator type, at 2 threads and the CPU batch size."""
    out = {}
    x = batch_of(data, batch)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in models.items():
            sess = session(path, 2, profile_prefix=str(Path(tmp) / name))
            feeds = model_feeds(sess, x)
            for _ in range(runs):
                sess.run(None, feeds)
            events = json.loads(Path(sess.end_profiling()).read_text())
            by_op: dict[str, float] = {}
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    op = e["args"]["op_name"]
                    by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1000 / runs  # µs -> ms per run
            out[name] = dict(sorted(by_op.items(), key=lambda kv: -kv[1]))
            top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(out[name].items())[:4])
            print(f"{name:>13} profile (ms per batch of {batch}): {top}")
    return out


# ---------------------------------------------------------------- fp16 (for GPUs)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and activations inside, float32 L in and ab out; Resize stays fp32 (the converter's block
    list), so its scales keep their type."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():  # the converter warns about every tiny weight it rounds to fp16's range
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(model, keep_io_types=True)


def fp16_check(fp32: Path, data: np.ndarray, photos: list[Path]) -> dict[str, Any]:
    """Convert with onnxconverter-common (keep_io_types: the service still sends and gets float32), check that
    the Resize and normalisation nodes survive, and run it on the CPU for correctness. Speed on CPU means
    nothing (x86 has no fast fp16 math): bench/gpu.py measures it on a GPU."""
    model = onnx.load(str(fp32))
    try:
        half = to_fp16(model)
    except ImportError as exc:  # a bench-only package (pip install onnxconverter-common); the rest still runs
        return {"skipped": f"fp16 conversion needs onnxconverter-common ({exc})"}
    ops = [n.op_type for n in half.graph.node]
    inferred = onnx.shape_inference.infer_shapes(half)
    dtypes = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    dtypes |= {t.name: t.data_type for t in half.graph.initializer}
    resizes = [n for n in half.graph.node if n.op_type == "Resize"]
    resize_nodes_fp32 = all(dtypes.get(n.input[0]) == onnx.TensorProto.FLOAT for n in resizes)
    resize_scales_fp32 = all(
        dtypes.get(n.input[2], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for n in resizes if len(n.input) > 2
    )
    result: dict[str, Any] = {
        "resize_nodes": ops.count("Resize"),
        "resize_nodes_in_fp32": [n.op_type for n in model.graph.node].count("Resize"),
        "resize_nodes_fp32": resize_nodes_fp32,
        "resize_scales_fp32": resize_scales_fp32,
        "normalisation_nodes": {op: ops.count(op) for op in ("Sub", "Div", "Softmax", "MatMul")},
        "casts_added": ops.count("Cast"),
        "bytes": len(half.SerializeToString()),
        "gpu": "measured by bench/gpu.py on a GPU host (docs/perf/gpu.json)",
    }
    try:
        sess16 = session(half.SerializeToString(), 2)
        sess32 = session(fp32, 2)
        (ab16,) = sess16.run(None, model_feeds(sess16, data[:4]))
        (ab32,) = sess32.run(None, model_feeds(sess32, data[:4]))
        result["max_abs_diff_ab"] = float(np.abs(ab16.astype(np.float32) - ab32).max())
        result["mean_abs_diff_ab"] = float(np.abs(ab16.astype(np.float32) - ab32).mean())
        result["output_dtype"] = str(ab16.dtype)
        if photos:
            from train.evaluate import evaluate

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "fp16.onnx"
                onnx.save(half, str(path))
                m16 = evaluate(str(path), [str(p) for p in photos]).modes["automatic"]
                m32 = evaluate(str(fp32), [str(p) for p in photos]).modes["automatic"]
            result["psnr_fp32"], result["psnr_fp16"] = m32.psnr, m16.psnr
    except Exception as exc:  # an ORT build without fp16 CPU kernels: say so instead of failing the benchmark
        result["cpu_run_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="ONNX Runtime throughput of the model: fp32 vs int8, batches, threads.")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--int8", type=Path, default=INT8_MODEL, help="made by python -m bench.quantize")
    p.add_argument("--baseline", type=Path, help="another model (e.g. the previous release) measured side by side")
    p.add_argument("--batches", default="1,2,4,8,16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--min_time", type=float, default=1.5, help="seconds per setting and model")
    p.add_argument("--fp16_out", type=Path, help="also write the fp16 model here (GPU serving)")
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny settings")
    a = p.parse_args(argv)
    if a.quick:
        a.batches, a.threads, a.min_time = "1,4", "2", 0.2
    models: dict[str, Path | bytes] = {"fp32": a.model}
    if a.baseline:
        models["baseline"] = a.baseline
    if a.int8.exists():
        models["int8"] = a.int8
    else:
        print(f"{a.int8} is missing: run python -m bench.quantize first; measuring fp32 only")
    size = model_size(a.model)
    data = sample_inputs(size)
    work = conv_macs(a.model)
    cores = len(os.sched_getaffinity(0))
    peak = peak_gflops(cores)
    batches, threads = [int(b) for b in a.batches.split(",")], [int(t) for t in a.threads.split(",")]
    rows = sweep(models, batches, threads, a.min_time, data)
    for row in rows:
        print(
            f"{row['model']:>9} threads={row['threads']} batch={row['batch']:>2}: {row['images_per_s']:7.1f} img/s, "
            f"p50 {row['p50_ms']:7.2f} ms/batch"
        )
    if CHECKPOINT.is_file():
        rows += torch_eager(CHECKPOINT, batches, threads, a.min_time, data)
    for row in rows:
        row["gflops"] = row["images_per_s"] * work["gflop_per_image"]
        row["pct_of_peak"] = 100 * row["gflops"] / peak["peak_gflops"]
    print(
        f"{work['gflop_per_image']:.3f} GFLOP/image (Conv); peak {peak['peak_gflops']:.0f} GFLOP/s ({peak['formula']})"
    )
    profile = op_profile(models, data)
    fp16 = fp16_check(a.model, data, [] if a.quick else split_photos())
    if a.fp16_out:
        onnx.save(to_fp16(onnx.load(str(a.model))), str(a.fp16_out))
        print(f"wrote {a.fp16_out} (for COLORIZER_MODEL_PATH on a GPU host)")
    print(f"fp16: {fp16}")
    meta = {p.key: p.value for p in onnx.load(str(a.model), load_external_data=False).metadata_props}
    int8_meta = {p.key: p.value for p in onnx.load(str(a.int8)).metadata_props} if a.int8.exists() else {}
    save(
        "model",
        {
            "model": a.model.name,
            "model_version": meta.get("colorizer.version", "unknown"),
            "int8_quantization": int8_meta.get("colorizer.quantization", ""),
            "input_size": size,
            "work": work,
            "peak": peak,
            "rows": rows,
            "profile": profile,
            "fp16": fp16,
        },
    )


if __name__ == "__main__":
    main()
