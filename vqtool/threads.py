"""How many threads torch may use, and one thread for sequential work.

torch starts one intra-op thread per core it can see in the machine, not per core the process may run
on: in a container limited to two cores of a 64-core host, or beside other busy processes, its
threads then fight over the few cores there are, and the thousands of tiny operations of a raster
walk (sampling, range coding) slow down 50-fold (issue 18). So the command line sizes the pool from
the cores this process may actually use (CPU affinity, cgroup quota), and the sequential walks run
on one thread, parallel across records instead.

Order of precedence: `vqtool --threads N`, then `VQTOOL_THREADS`, then `OMP_NUM_THREADS`, then the
available cores.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import VqtoolError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cores(root: Path = CGROUP_ROOT) -> int | None:
    """Whole cores allowed by a cgroup CPU quota (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), rounded up;
    None without a quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cores()
    return max(1, min(cores, quota) if quota else cores)


LOADAVG = Path("/proc/loadavg")


def free_cores(loadavg: Path = LOADAVG, tasks: Path = Path("/proc/self/task")) -> int:
    """Available cores that no other process is running on right now: Linux counts the runnable tasks
    in /proc/loadavg, and this process's own running threads are told apart in /proc/self/task.
    Unknown counts as one core. A short parallel step that waits on every thread of the pool should
    use no more threads than this: beside busy processes its barrier waits for a descheduled thread,
    and 96 such steps per walk made range coding 1,000 images 3.5-7x slower under load (one thread
    per walk: 1.6x)."""
    try:
        running = int(loadavg.read_text().split()[3].split("/")[0])
        ours = 0
        for task in os.scandir(tasks):
            try:
                ours += (tasks / task.name / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                pass
    except (OSError, ValueError, IndexError):
        return 1
    return max(1, available_cores() - max(0, running - max(ours, 1)))


def _positive(text: str, origin: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise VqtoolError(f"{origin} must be a whole number of threads, at least 1, not {text!r}")
    return int(text)


def chosen_threads(option: int | None = None) -> int:
    """The thread count by the order of precedence above."""
    if option is not None:
        return _positive(str(option), "--threads")
    for variable in ("VQTOOL_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(variable, "").strip():
            return _positive(os.environ[variable], variable)
    return available_cores()


def configure(option: int | None = None) -> int:
    """Size torch's pool for this process. Before torch is imported this only sets OMP_NUM_THREADS
    (read when torch starts; `--help` stays free of torch); after, it also calls torch.set_num_threads."""
    threads = chosen_threads(option)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


@contextmanager
def single_thread():
    """One intra-op thread for a sequential walk: its operations are too small to share, and spare
    threads only spin against other work on the cores."""
    with fewer_threads(lambda threads: 1):
        yield


@contextmanager
def core_for_writers():
    """One core fewer for torch while a thread pool compresses and writes the model's output (decode to
    files): on 2 cores the model alone at 1 thread and the writers beside it beat 2 threads fighting
    the writers for both cores (10,000 CIFAR-10 images: 7.2-7.6 s against 8.3-8.6 s)."""
    with fewer_threads(lambda threads: max(1, threads - 1)):
        yield


@contextmanager
def fewer_threads(rule):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(rule(before))
    try:
        yield
    finally:
        torch.set_num_threads(before)
