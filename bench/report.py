"""docs/PERFORMANCE.md and its plots, from the JSON results in docs/perf/ (written by the other bench modules).

.venv/bin/python -m bench.report
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot loads)

from bench import common  # noqa: E402
from bench.stages import FAST_SUBSET  # noqa: E402

DOC = common.ROOT / "docs" / "PERFORMANCE.md"
STAGE_NAMES = {
    "decode": "decode + L (JPEG → L at full size)",
    "resize": "resize L to the model",
    "model": "model (batch 1)",
    "edges": "ab along L's edges, at the model's size (app/edges.py)",
    "join": "upsample ab + join (8-bit Lab → BGR)",
    "encode": "PNG encode (app)",
}


def fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{x:,.{digits}f}"


def threads_label(n: int | None) -> str:
    """ORT intra-op threads as a setting: None (unset) and 0 (older results) are the service's default."""
    return "default" if not n else str(n)


def table(header: list[str], rows: list[list[str]], numeric: bool = True) -> str:
    """A Markdown table; ``numeric`` right-aligns every column after the first."""
    align = ["---"] + ["---:" if numeric else "---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


class Report:
    def __init__(self, results: Path, doc: Path, analysis: str = "") -> None:
        self.results, self.plots, self.doc, self.analysis = results, results, doc, analysis
        common.RESULTS = results
        # A result not measured yet is empty: each section checks for what it needs.
        self.model = common.load("model") or {}
        self.quant = common.load("quantize") or {}
        self.stages = common.load("stages") or {}
        self.load = common.load("load") or {}
        self.sweep = common.load("load-sweep") or {}
        self.targets: list[list[str]] = []

    # ------------------------------------------------------------ helpers

    def plot_path(self, name: str) -> str:
        self.plots.mkdir(parents=True, exist_ok=True)
        return str(self.plots / name)

    def rel(self, name: str) -> str:
        return os.path.relpath(self.plots / name, self.doc.parent)

    def model_row(self, model: str, threads: int, batch: int) -> dict[str, Any] | None:
        if not self.model:
            return None
        return next(
            (r for r in self.model["rows"] if r["model"] == model and r["threads"] == threads and r["batch"] == batch),
            None,
        )

    def load_row(self, server: str, concurrency: int) -> dict[str, Any] | None:
        if not self.load:
            return None
        return next((r for r in self.load["runs"] if r["server"] == server and r["concurrency"] == concurrency), None)

    # ------------------------------------------------------------ sections

    def machine(self) -> str:
        source = self.model or self.stages or self.load
        if not source:
            return "No results yet: run `.venv/bin/python -m bench.run_all`."
        m = source["machine"]
        return "\n".join(
            [
                f"All numbers: {m.get('model', '?')} ({m.get('family_model', '')}), **{m['cores']} cores** "
                f"at {m['ghz']:.2f} GHz as /proc/cpuinfo reports it, {m.get('hypervisor', '?')} virtual machine, "
                f"{m.get('flags', '')}; ONNX Runtime {m['onnxruntime']} (CPU execution provider), "
                f"OpenCV {m['opencv']}, NumPy {m['numpy']}, Python {m['python']}. "
                "No GPU in this run (the GPU section excepted: a lent H200).",
                "",
                "Everything compared in one table was measured in the same run, so the ratios hold even where "
                "the absolute numbers would move on another machine.",
            ]
        )

    def model_section(self) -> str:
        if not self.model:
            return "_Not measured yet: `.venv/bin/python -m bench.model`._"
        m, work, peak = self.model, self.model["work"], self.model["peak"]
        models = list(dict.fromkeys(r["model"] for r in m["rows"]))
        batches = sorted({r["batch"] for r in m["rows"]})
        threads = sorted({r["threads"] for r in m["rows"]})
        rows = []
        for model in models:
            for t in threads:
                cells = [f"{model}, {t} thread{'s' if t > 1 else ''}"]
                for b in batches:
                    r = self.model_row(model, t, b)
                    cells.append(f"{fmt(r['images_per_s'])} ({fmt(r['p50_ms'])} ms)" if r else "–")
                rows.append(cells)
        self.plot_model(models, threads)
        best = max((r for r in m["rows"] if r["model"] == "fp32"), key=lambda r: r["gflops"])
        parts = [
            f"Command: `{m['command']}` (measured {m['measured_at']}; model `{m['model']}` "
            f"version {m['model_version']}, input {m['input_size']}×{m['input_size']}).",
            "",
            "Images per second, and in brackets the median time of one batch, by batch size (columns). "
            "`fp32` is the shipped model (its bins decoded by a softmax over the last axis and a matmul); `int8` "
            "is the same graph quantised by bench/quantize.py; `torch-eager` is the checkpoint in PyTorch, as the "
            "naive server runs it.",
            "",
            table(["model, intra-op threads"] + [f"batch {b}" for b in batches], rows),
            "",
            f"![throughput by batch size]({self.rel('model_throughput.png')})",
            "",
            f"**Work and peak.** The Conv nodes of the graph do {work['conv_macs'] / 1e6:,.0f} M multiply-accumulates "
            f"per image (2·Cin/groups·Cout·k²·Hout·Wout summed over {len(work['layers'])} Conv nodes, shapes from a "
            f"real run), i.e. {work['gflop_per_image']:.3f} GFLOP; the one Gemm adds {work['gemm_macs'] / 1e6:.2f} M. "
            f"Peak by the issue's formula ({peak['formula']}) at {peak['ghz']:.2f} GHz × {peak['cores']} cores = "
            f"**{peak['peak_gflops']:.0f} GFLOP/s**. The shipped fp32 model's best setting reaches "
            f"{best['gflops']:.1f} GFLOP/s ({best['model']}, batch {best['batch']}, {best['threads']} threads) = "
            f"**{best['pct_of_peak']:.0f}% of that peak**. Assumption stated: the clock is the nominal one the VM "
            f"reports (no turbo visible); and this CPU ({common.machine().get('family_model', '')}, AMD Zen 1) "
            f"executes each 256-bit FMA as two 128-bit halves, so its real fp32 peak is half the formula's, "
            f"{peak['zen1_peak_gflops']:.0f} GFLOP/s, against which the same run is "
            f"{100 * best['gflops'] / peak['zen1_peak_gflops']:.0f}%. (int8 rows count the same MACs.)",
        ]
        if m.get("profile"):
            ops = sorted({op for prof in m["profile"].values() for op in list(prof)[:6]})
            prof_rows = [[op] + [fmt(m["profile"][name].get(op), 1) for name in m["profile"]] for op in ops]
            totals = ["**all operators**"] + [fmt(sum(p.values()), 1) for p in m["profile"].values()]
            parts += [
                "",
                "**Where the model's time goes** (ONNX Runtime's profiler, ms per batch of 4 at 2 threads, "
                "the top operators of each graph):",
                "",
                table(["operator"] + list(m["profile"]), [*prof_rows, totals]),
            ]
        return "\n".join(parts)

    def int8_section(self) -> str:
        m, q = self.model, self.quant
        if not q:
            return "_Not measured yet: `.venv/bin/python -m bench.quantize`._"
        s = q["scores"]
        parts = [
            f"Command: `{q['command']}` (measured {q['measured_at']}; {q['photos']} validation photos, "
            f"fp32 model version {q['model_version']}).",
            "",
            f"Static QDQ quantisation with `onnxruntime.quantization.quantize_static`: "
            f"{', '.join(f'{k} {v}' for k, v in q['settings'].items())}. Calibration feeds L at the model's size "
            "made exactly as the service makes it (app.pipeline.prepare: decode_lightness → model_input). The file is "
            f"{q['int8_bytes'] / 1e6:.2f} MB (fp32: {q['fp32_bytes'] / 1e6:.2f} MB). Quality is "
            "train/evaluate.py's `evaluate()` on the validation split (the training run's hold-out), at 256×256:",
            "",
            table(
                ["", "PSNR (dB) ↑", "colourfulness"],
                [
                    ["fp32", fmt(s["fp32"]["psnr"], 2), fmt(s["fp32"]["colourfulness"])],
                    ["int8", fmt(s["int8"]["psnr"], 2), fmt(s["int8"]["colourfulness"])],
                    ["gray baseline", fmt(s["gray"]["psnr"], 2), fmt(s["gray"]["colourfulness"])],
                    ["ground truth", "–", fmt(s["truth"]["colourfulness"])],
                ],
            ),
            "",
            f"PSNR change int8 − fp32: **{-q['psnr_loss_db']:+.2f} dB** (target: a loss of at most 0.2 dB). "
            + (
                "The calibration photos are the training run's calibration split, never the validation photos "
                "scored here."
                if "kept_fp32" in q["settings"]
                else "The calibration photos are the evaluation photos (as the issue asks); with min-max "
                "calibration that leaks only the activation ranges."
            ),
        ]
        if m:
            ratio_rows = []
            for b in sorted({r["batch"] for r in m["rows"]}):
                for t in sorted({r["threads"] for r in m["rows"]}):
                    i8, f32 = self.model_row("int8", t, b), self.model_row("fp32", t, b)
                    if i8 and f32:
                        ratio_rows.append(
                            [
                                f"batch {b}, {t} thread{'s' if t > 1 else ''}",
                                f"{i8['images_per_s'] / f32['images_per_s']:.2f}×",
                            ]
                        )
            parts += [
                "",
                "int8 throughput relative to fp32, same run (the same graph, so this is quantisation alone):",
                "",
                table(["setting", "int8 / fp32"], ratio_rows),
            ]
            i8, f32 = self.model_row("int8", 2, 4), self.model_row("fp32", 2, 4)
            if i8 and f32:
                ratio = i8["images_per_s"] / f32["images_per_s"]
                self.targets.insert(
                    0,
                    [
                        "int8 ≥ 1.5× fp32 throughput, ≤ 0.2 dB PSNR loss (model alone, batch 4, 2 threads)",
                        f"**{ratio:.2f}×** ({i8['images_per_s']:.1f} vs {f32['images_per_s']:.1f} img/s); "
                        f"PSNR {-q['psnr_loss_db']:+.2f} dB",
                        verdict(ratio >= 1.5 and q["psnr_loss_db"] <= 0.2),
                    ],
                )
        return "\n".join(parts)

    def fp16_section(self) -> str:
        if not self.model or "fp16" not in self.model:
            return "_Not measured yet._"
        f = self.model["fp16"]
        if "skipped" in f:  # bench/model.py records why it did not convert (e.g. onnxconverter-common missing)
            return f"_Not measured in the last run: {f['skipped']}._"
        lines = [
            "`bench/model.py` converts the model with onnxconverter-common's "
            "`convert_float_to_float16(keep_io_types=True)` (so the service still sends float32 L and gets float32 "
            "ab) and checks the result: "
            f"{f['resize_nodes']} Resize nodes survive and stay fp32 ({'yes' if f['resize_nodes_fp32'] else 'NO'}; "
            f"their scales stay float32: {'yes' if f['resize_scales_fp32'] else 'NO'}), the normalisation and "
            f"decoding nodes are all there ({', '.join(f'{k} {v}' for k, v in f['normalisation_nodes'].items())}), "
            f"{f['casts_added']} Cast nodes were added at the fp16/fp32 borders; "
            f"the file is {f['bytes'] / 1e6:.1f} MB.",
        ]
        if "cpu_run_error" in f:
            lines.append(f"Running it on the CPU failed here: `{f['cpu_run_error']}`.")
        else:
            lines.append(
                f"Run on the CPU execution provider for correctness: max |Δab| against fp32 = "
                f"{f['max_abs_diff_ab']:.3f}, mean {f['mean_abs_diff_ab']:.4f} (ab units)"
                + (
                    f"; PSNR on the validation split {f['psnr_fp16']:.2f} dB vs fp32 {f['psnr_fp32']:.2f} dB."
                    if "psnr_fp16" in f
                    else "."
                )
            )
        lines += [
            "",
            'GPU numbers: "GPU" above (`bench/gpu.py`, on an H200: fp16 gains nothing up to batch 32, so the fp32 '
            "file serves).",
        ]
        return "\n".join(lines)

    def stage_names(self) -> dict[str, str]:
        """The stages stages.json holds, in its order, each with what it does (with the run's settings)."""
        st = self.stages
        first = next(iter(st["stages"].values()))
        names = dict(STAGE_NAMES)
        if st.get("threads"):
            names["model"] = f"model (batch 1, {st['threads']} thread{'s' if st['threads'] > 1 else ''})"
        if "png_compression" in st:
            names["encode"] = f"PNG encode (app, level {st['png_compression']})"
        return {k: names.get(k, k) for k, v in first.items() if isinstance(v, dict)}

    def stages_section(self) -> str:
        if not self.stages:
            return "_Not measured yet: `.venv/bin/python -m bench.stages`._"
        st = self.stages
        sizes = list(st["stages"])
        names = self.stage_names()
        rows = [[name] + [fmt(st["stages"][mp][s]["p50_ms"]) for mp in sizes] for s, name in names.items()]
        rows.append(["**total**"] + [f"**{fmt(st['stages'][mp]['total_p50_ms'])}**" for mp in sizes])
        rows.append(
            ["JPEG in / PNG out (MB)"]
            + [
                f"{st['stages'][mp]['jpeg_bytes'] / 1e6:.2f} / {st['stages'][mp]['png_bytes'] / 1e6:.2f}"
                for mp in sizes
            ]
        )
        header = ["stage (median ms)"] + [
            f"{mp} MP ({st['stages'][mp]['width']}×{st['stages'][mp]['height']})" for mp in sizes
        ]
        self.plot_stages()
        parts = [
            f"Command: `{st['command']}` (measured {st['measured_at']}; model version {st.get('model_version', '?')}). "
            "One image at a time through the functions app.pipeline's prepare and finish call, with the service's "
            "default settings; photo-like JPEGs (gray content with fractal texture, hard edges and film grain, "
            "stored as 3-channel JPEG q90; see bench/common.py).",
            "",
            table(header, rows),
            "",
            f"![stage shares]({self.rel('stages.png')})",
        ]
        if st.get("float_vs_current"):
            parts += ["", self.float_vs_current(sizes)]
        return "\n".join(parts)

    def float_vs_current(self, sizes: list[str]) -> str:
        """The uint8 pipeline that landed with model 1.0.1 against the float one it replaced, stage by stage."""
        fc = self.stages["float_vs_current"]
        rows = []
        for step, old, new in (
            ("decode_l", "decode + L, float: decode_image → lightness", "decode + L, now: decode_lightness"),
            ("join", "join, float Lab (1.0.0)", "join, now: 8-bit Lab"),
        ):
            rows.append([old] + [fmt(fc[mp][step]["float"]["p50_ms"]) for mp in sizes])
            cells = [new]
            for mp in sizes:
                r = fc[mp][step]
                if step == "join":
                    diff = f"Δ ≤ {r['max_abs_diff_levels']}, mean {r['mean_abs_diff_levels']:.2f}"
                else:
                    diff = f"max ΔL {r['max_abs_diff_L']:.3g}"
                cells.append(f"{fmt(r['current']['p50_ms'])} ({diff})")
            rows.append(cells)
        saved = [
            sum(fc[mp][step]["float"]["p50_ms"] - fc[mp][step]["current"]["p50_ms"] for step in ("decode_l", "join"))
            for mp in sizes
        ]
        rows.append(["**saved per image**"] + [f"**{fmt(x)}**" for x in saved])
        return "\n".join(
            [
                "**Before and after the uint8 pipeline** (it landed with model 1.0.1: L straight from the 8-bit "
                "pixels, a table lookup for gray photos, and the join through OpenCV's fixed-point 8-bit Lab). The "
                "float path of the 1.0.0 service against the current one, same photos, same run; Δ is the largest "
                "difference from the float output, in L units or 8-bit levels:",
                "",
                table(["median ms"] + [f"{mp} MP" for mp in sizes], rows),
            ]
        )

    def png_section(self) -> str:
        if not self.stages or not self.stages.get("png"):
            return "_Not measured yet._"
        parts = [
            "`app: encode_image` is the service's own PNG writer at its default COLORIZER_PNG_COMPRESSION (a Sub "
            "filter on every row, deflated by ISA-L at levels 1–3); the other rows are the alternatives.",
            "",
        ]
        for mp, rows in self.stages["png"].items():
            ref = next((r for r in rows if r["encoder"] == "cv2 level 1"), rows[0])
            body = [
                [
                    r["encoder"],
                    fmt(r["p50_ms"]),
                    f"{r['bytes'] / 1e6:.2f}",
                    f"{ref['p50_ms'] / r['p50_ms']:.1f}×",
                    f"{r['bytes'] / ref['bytes']:.2f}",
                    "yes" if r["lossless"] else "NO",
                ]
                for r in rows
            ]
            parts += [
                f"On the {mp} MP output ({'every encoder' if mp == '1' else 'the fast ones'}):",
                "",
                table(["encoder", "median ms", "MB", "speed vs cv2 level 1", "size vs cv2 level 1", "lossless"], body),
                "",
            ]
        self.plot_png()
        parts.append(f"![PNG encoders: time against size]({self.rel('png_encoders.png')})")
        return "\n".join(parts)

    def load_section(self) -> str:
        if not self.load:
            return "_Not measured yet: `.venv/bin/python -m bench.load`._"
        ld = self.load
        servers = list(dict.fromkeys(r["server"] for r in ld["runs"]))
        rows = []
        for server in servers:
            for r in (x for x in ld["runs"] if x["server"] == server):
                rows.append(
                    [
                        server,
                        str(r["concurrency"]),
                        fmt(r["images_per_s"]),
                        fmt(r["p50_ms"], 0),
                        fmt(r["p95_ms"], 0),
                        fmt(r["p99_ms"], 0),
                        str(r.get("shed", "–")),
                        str(r["errors"]),
                        fmt(r["mean_batch"], 2) if r.get("mean_batch") else "–",
                        fmt(r["healthz"]["p99_ms"]),
                    ]
                )
        self.plot_load(servers)
        inproc = [
            [
                f"{r.get('variant', 'fp32')} ({r.get('model', '?')})",
                str(r["batch"]),
                str(r.get("threads", "–")),
                fmt(r["images_per_s"]),
            ]
            for r in ld.get("in_process", [])
        ]
        large = [
            [
                v["server"],
                fmt(v["p50_ms"], 0),
                str(v["n"]),
                f"{v['jpeg_bytes'] / 1e6:.1f} / {v['png_bytes'] / 1e6:.1f}",
                fmt(v["vmhwm_before_mb"], 0),
                fmt(v["vmhwm_after_first_mb"], 0),
                f"**+{v['peak_extra_mb']:.0f}**",
            ]
            for k, v in ld.items()
            if k.startswith("large_")
        ]
        return "\n".join(
            [
                f"Command: `{ld['command']}` (measured {ld['measured_at']}). Real uvicorn servers (one worker) on "
                "127.0.0.1, a closed loop per level over raw sockets (bench/rawhttp.py, so the client takes little CPU "
                "from the server; each client sends its next photo when the answer arrives; at most the request count "
                "or the time limit), multipart uploads of 8 different "
                f"{ld['photo']} photos (~{ld['payload_kb']:.0f} kB each), PNG answers. A 503 is retried after its "
                "Retry-After, as the web page and a well-behaved client do; latency counts from the first attempt. "
                "A separate thread GETs "
                "/healthz every 50 ms on its own connection throughout. The load generator shares the 2 cores with "
                "the server, as a client on the same host would.",
                "",
                table(
                    [
                        "server",
                        "clients",
                        "img/s",
                        "p50 ms",
                        "p95 ms",
                        "p99 ms",
                        "503 (retried)",
                        "errors",
                        "mean batch",
                        "/healthz p99 ms",
                    ],
                    rows,
                ),
                "",
                f"![throughput and latency by concurrency]({self.rel('load.png')})",
                "",
                self.server_notes(servers),
                "",
                "**The bare model in-process** (no HTTP, no queue: `prepare` each photo, `runtime.run` on the "
                "batch, `finish` each (join + PNG), one step after another, in one process, with the service's "
                "settings):",
                "",
                table(["model", "batch", "ORT threads", "img/s"], inproc),
                "",
                "**12 MP JPEG → PNG end to end** (one client, 4000×3000 photo-like JPEG). Peak memory is the "
                "server's VmHWM (/proc/<pid>/status) before the first 12 MP request (after the small-photo load) "
                "and after it:",
                "",
                table(
                    [
                        "server",
                        "p50 ms",
                        "requests",
                        "JPEG / PNG MB",
                        "VmHWM before MB",
                        "VmHWM after MB",
                        "peak extra MB per 12 MP request",
                    ],
                    large,
                ),
            ]
        )

    def server_notes(self, servers: list[str]) -> str:
        """What each server of the load tables is."""
        base = next((r for r in self.load.get("in_process", []) if "threads" in r), None)
        settings = ""
        if base:
            plural = "s" if base["threads"] > 1 else ""
            settings = f", {base['threads']} ORT thread{plural}, PNG level {base['png_compression']}"
        notes = []
        for server in servers:
            if server == "service":
                note = (
                    "is the default configuration of that run (CPU batch 4, 0 ms delay, two model runs at once, one "
                    f"image in flight per core{settings}; issue 16 has since changed admission: see docs/perf/"
                    "admission.json and GET /model for today's defaults)"
                )
            elif server == "service-nobatch":
                note = "sets COLORIZER_MAX_BATCH_SIZE=1"
            elif server == "service-int8":
                note = "loads the int8 model"
            elif server.startswith("service-threads"):
                note = f"sets COLORIZER_INTRA_OP_THREADS={server.removeprefix('service-threads')} (one per core)"
            elif server.startswith("service-inflight"):
                note = f"sets COLORIZER_MAX_IN_FLIGHT={server.removeprefix('service-inflight')} (two per core)"
            elif server == "service-queueing":
                note = "sets COLORIZER_MAX_IN_FLIGHT=64 (a plain queue: no 503 at these loads, batches form)"
            elif server == "naive":
                note = "is bench/naive_server.py (PyTorch eager, a global lock, float pipeline, cv2 default PNG)"
            else:
                continue
            notes.append(f"`{server}` {note}")
        return "; ".join(notes) + "."

    def sweep_section(self) -> str:
        if not self.sweep:
            return "_Not measured yet: `.venv/bin/python -m bench.load --sweep`._"
        sw = self.sweep
        rows = [
            [
                f"{r['max_batch']} / {r['delay_ms']} ms / {threads_label(r.get('threads'))}",
                str(r["concurrency"]),
                fmt(r["images_per_s"]),
                fmt(r["p50_ms"], 0),
                fmt(r["p95_ms"], 0),
                fmt(r["mean_batch"], 2) if r.get("mean_batch") else "–",
                str(r["errors"]),
            ]
            for r in sw["runs"]
        ]
        self.plot_sweep()
        best = max(sw["runs"], key=lambda r: r["images_per_s"])
        levels = " and ".join(str(c) for c in sorted({r["concurrency"] for r in sw["runs"]}))
        return "\n".join(
            [
                f"Command: `{sw['command']}` (measured {sw['measured_at']}). The service with each "
                "(COLORIZER_MAX_BATCH_SIZE, COLORIZER_MAX_BATCH_DELAY_MS, COLORIZER_INTRA_OP_THREADS; default = "
                f"unset, the service's own choice), loaded as above at {levels} clients.",
                "",
                table(
                    ["max batch / delay / ORT threads", "clients", "img/s", "p50 ms", "p95 ms", "mean batch", "errors"],
                    rows,
                ),
                "",
                f"![batching settings]({self.rel('batching.png')})",
                "",
                f"Highest throughput in this run: max batch {best['max_batch']}, delay {best['delay_ms']} ms, "
                f"ORT threads {threads_label(best.get('threads'))} at {best['concurrency']} clients "
                f"({best['images_per_s']:.1f} img/s).",
            ]
        )

    # ------------------------------------------------------------ targets

    def evaluate_targets(self) -> None:
        """One row per target: what this run measured, and whether that meets it."""
        ld = self.load
        if not ld:
            return
        inproc = next(
            (r for r in ld.get("in_process", []) if r["batch"] == 4 and r.get("variant", "fp32") == "fp32"), None
        )
        s4 = self.load_row("service", 4)
        if inproc and s4:
            ratio = s4["images_per_s"] / inproc["images_per_s"]
            self.targets.append(
                [
                    "service at 4 clients ≥ 0.85 × the model in-process (512×512 JPEG, batch 4, same pre/post)",
                    f"{s4['images_per_s']:.1f} vs {inproc['images_per_s']:.1f} img/s = **{ratio:.2f}×**",
                    verdict(ratio >= 0.85),
                ]
            )
        ls, ln = ld.get("large_service"), ld.get("large_naive")
        if ls and ln:
            ratio = ls["p50_ms"] / ln["p50_ms"]
            self.targets.append(
                [
                    "12 MP JPEG → PNG end-to-end p50 ≤ 0.5 × naive",
                    f"{ls['p50_ms']:.0f} vs {ln['p50_ms']:.0f} ms = **{ratio:.2f}×**",
                    verdict(ratio <= 0.5),
                ]
            )
        s8, n8 = self.load_row("service", 8), self.load_row("naive", 8)
        if s8 and n8:
            ratio = s8["images_per_s"] / n8["images_per_s"]
            self.targets.append(
                [
                    "≥ 3 × naive throughput at 8 clients (512×512 JPEG)",
                    f"{s8['images_per_s']:.1f} vs {n8['images_per_s']:.1f} img/s = **{ratio:.2f}×**",
                    verdict(ratio >= 3),
                ]
            )
        saturated = [r for r in ld["runs"] if r["server"] == "service" and r["concurrency"] >= 4]
        if saturated:
            worst = max(saturated, key=lambda r: r["healthz"]["p99_ms"])
            self.targets.append(
                [
                    "/healthz p99 < 50 ms while saturated (service at 4–32 clients)",
                    f"worst p99 **{worst['healthz']['p99_ms']:.1f} ms** (at {worst['concurrency']} clients)",
                    verdict(worst["healthz"]["p99_ms"] < 50),
                ]
            )
        if ls:
            self.targets.append(
                [
                    "peak RSS per 12 MP request documented (server VmHWM before/after)",
                    f"service **+{ls['peak_extra_mb']:.0f} MB**"
                    + (f", naive +{ln['peak_extra_mb']:.0f} MB" if ln else ""),
                    "documented",
                ]
            )

    # ------------------------------------------------------------ plots

    def plot_model(self, models: list[str], threads: list[int]) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for i, model in enumerate(models):
            for t in threads:
                rows = sorted(
                    (r for r in self.model["rows"] if r["model"] == model and r["threads"] == t),
                    key=lambda r: r["batch"],
                )
                ax.plot(
                    [r["batch"] for r in rows],
                    [r["images_per_s"] for r in rows],
                    marker="o",
                    color=f"C{i}",
                    linestyle="-" if t == max(threads) else "--",
                    label=f"{model}, {t} thr",
                )
        ax.set_xscale("log", base=2)
        batches = sorted({r["batch"] for r in self.model["rows"]})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s")
        ax.set_title("Model alone in ONNX Runtime (CPU)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(self.plot_path("model_throughput.png"), dpi=110)
        plt.close(fig)

    def plot_stages(self) -> None:
        st = self.stages["stages"]
        sizes = list(st)
        fig, ax = plt.subplots(figsize=(7, 4.2))
        left = [0.0] * len(sizes)
        for i, (stage, name) in enumerate(self.stage_names().items()):
            shares = [100 * st[mp][stage]["p50_ms"] / st[mp]["total_p50_ms"] for mp in sizes]
            ax.barh(sizes, shares, left=left, color=f"C{i}", label=name)
            left = [a + b for a, b in zip(left, shares, strict=True)]
        for y, mp in enumerate(sizes):
            ax.text(101, y, f"{st[mp]['total_p50_ms']:,.0f} ms", va="center", fontsize=8)
        ax.set_xlim(0, 118)
        ax.set_xlabel("share of one image's time (%)")
        ax.set_ylabel("megapixels")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # 3 columns overflow the figure
        fig.tight_layout()
        fig.savefig(self.plot_path("stages.png"), dpi=110)
        plt.close(fig)

    def plot_png(self) -> None:
        rows = self.stages["png"].get("1") or next(iter(self.stages["png"].values()))
        labelled = {
            "cv2 level 0",
            "cv2 level 3",
            "cv2 level 6",
            "cv2 level 9",
            "sub + isal level 3",
            "Pillow compress_level 1",
        }
        labelled |= set(FAST_SUBSET)
        # The encoder the app dispatches to is also in the list under its own name; its label would print over
        # the app's, on the same point.
        app_bytes = {r["bytes"] for r in rows if r["encoder"].startswith("app:")}
        fig, ax = plt.subplots(figsize=(8, 4.8))
        for r in rows:
            app = r["encoder"].startswith("app:")
            color = "C3" if app else ("C0" if r["encoder"].startswith("cv2") else "C2")
            x, y = r["p50_ms"], r["bytes"] / 1e6
            ax.scatter(x, y, color=color, s=40 if app else 22, zorder=3 if app else 2)
            if app or (r["encoder"] in labelled and r["bytes"] not in app_bytes):
                ax.annotate(r["encoder"], (x, y), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("median encode time (ms, log scale)")
        ax.set_ylabel("PNG size (MB)")
        ax.set_title(
            "PNG encoders on a 1 MP colourised photo (blue: OpenCV, green: others, red: the app's)", fontsize=9
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.plot_path("png_encoders.png"), dpi=110)
        plt.close(fig)

    def plot_load(self, servers: list[str]) -> None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for i, server in enumerate(servers):
            rows = sorted((r for r in self.load["runs"] if r["server"] == server), key=lambda r: r["concurrency"])
            xs = [r["concurrency"] for r in rows]
            full_curve = len(rows) > 2
            style = {"marker": "o" if full_curve else "D", "color": f"C{i}", "label": server}
            left.plot(xs, [r["images_per_s"] for r in rows], **style)
            right.plot(xs, [r["p95_ms"] for r in rows], **style)
        levels = sorted({r["concurrency"] for r in self.load["runs"]})
        for ax, label in ((left, "images / s"), (right, "p95 latency (ms)")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        right.set_yscale("log")
        left.legend(fontsize=8)
        fig.suptitle("512×512 JPEG → PNG over HTTP, 2-core CPU")
        fig.tight_layout()
        fig.savefig(self.plot_path("load.png"), dpi=110)
        plt.close(fig)

    def plot_sweep(self) -> None:
        runs = self.sweep["runs"]
        levels = sorted({r["concurrency"] for r in runs})
        configs = list(dict.fromkeys((r["max_batch"], r["delay_ms"], r.get("threads")) for r in runs))
        fig, ax = plt.subplots(figsize=(8, 3.8))
        width = 0.8 / len(levels)
        for j, c in enumerate(levels):
            values = [
                next(
                    (
                        r["images_per_s"]
                        for r in runs
                        if (r["max_batch"], r["delay_ms"], r.get("threads")) == k and r["concurrency"] == c
                    ),
                    0,
                )
                for k in configs
            ]
            ax.bar([i + j * width for i in range(len(configs))], values, width, label=f"{c} clients")
        ax.set_xticks([i + width * (len(levels) - 1) / 2 for i in range(len(configs))])
        ax.set_xticklabels([f"{b} / {d} ms" + (f" / {t} thr" if t else "") for b, d, t in configs], fontsize=7)
        ax.set_xlabel("COLORIZER_MAX_BATCH_SIZE / COLORIZER_MAX_BATCH_DELAY_MS (/ COLORIZER_INTRA_OP_THREADS)")
        ax.set_ylabel("images / s")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(self.plot_path("batching.png"), dpi=110)
        plt.close(fig)

    # ------------------------------------------------------------ the document

    def render(self) -> str:
        sections = {
            "model": self.model_section(),
            "int8": self.int8_section(),
            "fp16": self.fp16_section(),
            "stages": self.stages_section(),
            "png": self.png_section(),
            "load": self.load_section(),
            "sweep": self.sweep_section(),
        }
        self.evaluate_targets()
        targets = table(["target (2-core CPU, ratios in one run)", "measured", "verdict"], self.targets, numeric=False)
        return TEMPLATE.format(machine=self.machine(), targets=targets, analysis=self.analysis, **sections)


TEMPLATE = """# Performance

How fast the service is on a CPU, where the time goes, and what it would take to go faster. Every number
here comes from `bench/` and is regenerated, with the plots in `docs/perf/`, by

```sh
.venv/bin/python -m bench.run_all          # ~11 min on 2 cores, machine otherwise idle; --quick: a smoke test
```

{machine}

## Targets

{targets}

{analysis}

## 1. The model alone

{model}

### int8

{int8}

On a CPU with VNNI the same quantisation pays: see docs/training_history.md, "Speed and int8", and docs/perf/vnni/
(AMD EPYC family 26, AVX-512 VNNI: 1.6× fp32's images/s at one thread per run, the service's default, with no loss
of colour). The service serves the int8 file by itself there (`COLORIZER_PRECISION=auto`).

### fp16 (for GPUs)

{fp16}

## 2. Pipeline stages by image size

{stages}

### PNG encoders

{png}

## 3. The service under load

{load}

### Batching defaults

{sweep}
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write docs/PERFORMANCE.md and its plots from docs/perf/*.json.")
    p.add_argument("--results", type=Path, default=common.RESULTS)
    p.add_argument("--doc", type=Path, default=DOC)
    a = p.parse_args(argv)
    # The reading of the numbers is written by a person after a full run; it survives regeneration there.
    analysis = common.ROOT / "docs" / "perf" / "analysis.md"
    text = analysis.read_text().strip() if analysis.exists() else ""
    a.doc.write_text(Report(a.results, a.doc, text).render())
    print(f"wrote {a.doc}")


if __name__ == "__main__":
    main()
