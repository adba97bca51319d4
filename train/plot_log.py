"""Plot a training run's metrics.jsonl (training and validation loss against minutes):

python -m train.plot_log runs/v2/metrics.jsonl docs/training_curve.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(argv: list[str] | None = None) -> None:
    log_path, out = (Path(a) for a in (argv or sys.argv[1:]))
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], label="training batch loss", alpha=0.6)
    ax.plot(steps, [r["val_loss"] for r in rows], marker="o", label="validation loss (automatic, no hints)")
    ax.set(xlabel="step (32 crops each)", ylabel="CE + 10 × L1(ab/110)", title="Model 2.0 training")
    ax.grid(alpha=0.3)
    ax.legend()
    top = ax.secondary_xaxis("top", functions=(lambda s: s, lambda s: s))
    top.set_ticks(
        steps[:: max(1, len(steps) // 6)], labels=[f"{r['minutes']:.0f} min" for r in rows[:: max(1, len(rows) // 6)]]
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
