"""Training speed of this working tree against a git revision, side by side in one run: seconds per optimiser step
of the training cycle (train.train with the shipped recipe's settings) and of the anchored fine-tune
(train.finetune_hints, as the recipe's first), each side run in turn and the rounds alternating, so a drift of the
machine hits both. From them, the recipe's 2,500 + 2,355 + 1,075 steps in hours on this CPU.

    .venv/bin/python -m bench.train_speed --base HEAD      # -> docs/perf/train_speed.json

The revision is checked out in a temporary git worktree and run by this interpreter; both sides share one decoded-image
cache. Needs the training photos (python -m train.fetch_data). Each side's fine-tune starts from its own cycle's end.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, save
from train.config import parse_config

RECIPE_STEPS = {"cycle": 2500, "finetune": 2355 + 1075}  # models/README.md, "Reproduce"
CYCLE_ARGS = "--hint_adapter true --plain_backdrop_share 0.6 --ema_decay 0.999 --max_steps 4835"
FINETUNE_ARGS = "--trunk_lr 3e-4 --lr 1e-3 --anchor 1"
FINETUNE_LOG = re.compile(r"step (\d+), loss .* ([0-9.]+) s/step")


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def run(command: list[str], tree: Path) -> str:
    """Run a training command in a tree; its log (stderr), or its last lines in the error when it fails."""
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed in {tree}:\n{done.stderr[-3000:]}")
    return done.stderr


def cycle_seconds(metrics: Path, batch: int) -> float:
    """Seconds a step over the cycle's last evaluation window (train.train resets its rate there, so the start-up and
    the first steps are not in it)."""
    last = json.loads(metrics.read_text().splitlines()[-1])
    return batch / float(last["img_s"])


def finetune_seconds(log: str) -> float:
    """Seconds a step between the fine-tune's first and last progress lines: each says the mean since its start, so
    the difference of their totals leaves the start-up out."""
    points = [(int(m[1]), float(m[2])) for m in FINETUNE_LOG.finditer(log)]
    if len(points) < 2:
        raise RuntimeError(f"the fine-tune logged fewer than two progress lines:\n{log[-2000:]}")
    (first, mean_first), (last, mean_last) = points[0], points[-1]
    return (last * mean_last - first * mean_first) / (last - first)


def run_side(tree: Path, out: Path, a: argparse.Namespace) -> dict[str, float]:
    """One round of one side: the cycle's steps, then the fine-tune's from the cycle's end."""
    common = ["--cache_dir", a.cache_dir] + (["--precision", a.precision] if a.precision != "fp32" else [])
    cycle = [sys.executable, "-m", "train.train", "--out_dir", str(out), "--stop_step", str(a.cycle_steps)]
    cycle += ["--eval_every", str(a.cycle_steps // 2), "--data_dir", a.data_dir, *shlex.split(CYCLE_ARGS), *common]
    cycle += shlex.split(a.cycle_args)
    run(cycle, tree)
    batch = parse_config(cycle[3:]).batch_size  # the flags after "python -m train.train", as the run read them
    finetune = [sys.executable, "-m", "train.finetune_hints", str(out / "last.pt"), str(out / "ft.pt")]
    finetune += ["--steps", str(a.finetune_steps), *shlex.split(FINETUNE_ARGS), *common]
    log = run(finetune, tree)
    return {"cycle": cycle_seconds(out / "metrics.jsonl", batch), "finetune": finetune_seconds(log)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="Training step time of this tree against a git revision.")
    p.add_argument("--base", default="HEAD", help="the revision to compare with (default: the last commit)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cycle_steps", type=int, default=100, help="cycle steps a side; the last half is timed")
    p.add_argument("--finetune_steps", type=int, default=75, help="fine-tune steps a side (it logs every 25)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--data_dir", default=str(Path.home() / ".cache" / "colorize" / "train"))
    p.add_argument("--cache_dir", default=str(Path(tempfile.gettempdir()) / "colorizer-bench" / "train-cache"))
    p.add_argument("--cycle_args", default="", help="more train.train settings for both sides (tests: a small net)")
    p.add_argument("--name", default="train_speed", help="the result file's name")
    a = p.parse_args(argv)
    a.data_dir, a.cache_dir = (str(Path(d).resolve()) for d in (a.data_dir, a.cache_dir))  # each side runs elsewhere
    base_commit = git("rev-parse", a.base)
    seconds: dict[str, dict[str, list[float]]] = {side: {"cycle": [], "finetune": []} for side in ("base", "tree")}
    with tempfile.TemporaryDirectory(prefix="train-speed-") as scratch:
        base_tree = Path(scratch) / "base"
        git("worktree", "add", "--detach", str(base_tree), base_commit)
        try:
            for round_ in range(a.rounds):
                for side, tree in (("base", base_tree), ("tree", ROOT)):
                    got = run_side(tree, Path(scratch) / f"{side}{round_}", a)
                    for stage, value in got.items():
                        seconds[side][stage].append(value)
                    print(f"round {round_ + 1}, {side}: " + ", ".join(f"{k} {v:.3f} s/step" for k, v in got.items()))
        finally:
            git("worktree", "remove", "--force", str(base_tree))
    median = {side: {stage: statistics.median(v) for stage, v in stages.items()} for side, stages in seconds.items()}
    ratio = {stage: median["tree"][stage] / median["base"][stage] for stage in RECIPE_STEPS}
    hours = {side: sum(median[side][k] * n for k, n in RECIPE_STEPS.items()) / 3600 for side in median}
    print(
        f"tree / base, seconds a step: cycle {ratio['cycle']:.3f}, fine-tune {ratio['finetune']:.3f}; "
        f"the recipe's steps: {hours['base']:.2f} h -> {hours['tree']:.2f} h"
    )
    result = {
        "base": a.base,
        "base_commit": base_commit,
        "tree_commit": git("rev-parse", "HEAD"),
        "tree_changed": bool(git("status", "--porcelain", "--untracked-files=no")),
        "precision": a.precision,
        "cycle_steps": a.cycle_steps,
        "finetune_steps": a.finetune_steps,
        "cycle_args": CYCLE_ARGS + (" " + a.cycle_args if a.cycle_args else ""),
        "finetune_args": FINETUNE_ARGS,
        "seconds_per_step": seconds,
        "median": median,
        "tree_over_base": ratio,
        "recipe_hours": hours,
    }
    save(a.name, result)
    return result


if __name__ == "__main__":
    main()
