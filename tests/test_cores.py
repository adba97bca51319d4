"""Per-core defaults follow the container's CPU limit (cgroup v2 cpu.max), not the host's core count."""

from __future__ import annotations

import os
from pathlib import Path

from app.cores import available_cores


def cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


def test_a_quota_caps_the_cores_rounded_up(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(cpu_max(tmp_path, "50000 100000\n")) == 1  # --cpus 0.5
    assert available_cores(cpu_max(tmp_path, "150000 100000\n")) == min(2, affinity)  # --cpus 1.5
    assert available_cores(cpu_max(tmp_path, f"{100000 * (affinity + 8)} 100000\n")) == affinity  # above the host


def test_no_limit_or_no_file_leaves_the_affinity_mask(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(cpu_max(tmp_path, "max 100000\n")) == affinity
    assert available_cores(tmp_path / "missing") == affinity
    assert available_cores(cpu_max(tmp_path, "")) == affinity
