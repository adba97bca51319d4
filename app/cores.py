"""How many CPU cores this process may really use, for every per-core default.

``os.cpu_count()`` and the affinity mask show the host's cores; inside a container with a CPU limit (``docker run
--cpus``, a Kubernetes ``limits.cpu``) the kernel's CFS quota allows fewer, and threads sized from the host's count
would only queue behind each other. cgroup v2 publishes the quota in ``cpu.max`` as "<quota> <period>" or "max".
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The affinity mask's size, capped by the cgroup v2 CPU quota (rounded up) when there is one."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        limit = math.ceil(int(quota) / int(period))
    except (OSError, ValueError):  # no cgroup v2 file, "max" (no limit), or something unexpected: trust affinity
        return cores
    return max(1, min(cores, limit))
