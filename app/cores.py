"""How many CPU cores this process may really use, for every per-core default.

``os.cpu_count()`` and the affinity mask show the host's cores; inside a container with a CPU limit (``docker run
--cpus``, a Kubernetes ``limits.cpu``) the kernel's CFS quota allows fewer, and threads sized from the host's count
would only queue behind each other. cgroup v2 publishes the quota in ``cpu.max`` as "<quota> <period>" or "max".
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# Nice values of the threads that do the work, above the event loop's 0: the loop accepts, parses, admits and
# refuses requests, and answers /healthz, in slices of a millisecond; if it queues for the CPU behind the images it
# admitted, every answer waits, refusals included (bench.soak overload on 2 busy cores: 503 p50 2.7 s with the
# workers at 0). Image work yields to the loop; video work yields to image work.
IMAGE_WORK_NICE = 5
VIDEO_WORK_NICE = 10

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


def lower_thread_priority(nice: int) -> None:
    """Run the calling thread (and the threads it starts) at ``nice``: on Linux the nice value is per thread and
    inherited by threads created from it. A thread pool's ``initializer``."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        log.debug("could not lower the priority of a worker thread", exc_info=True)
