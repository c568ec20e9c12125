"""Helpers shared by the benchmark modules: machine description, repeated timing, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Any, Callable


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["mem_total_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def repeat(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> dict[str, float]:
    """Wall seconds of ``fn`` over ``repeats`` runs after ``warmup``: min / median / max."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "repeats": repeats}


def peak_rss_mib() -> float:
    """Peak resident set size of this process (and waited-for children) in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def matmul_flops(n: int = 1024, repeats: int = 5) -> float:
    """Achieved fp32 matmul FLOP/s on this machine (the denominator for training-efficiency ratios)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    t = repeat(lambda: a @ b, repeats=repeats, warmup=2)
    return 2 * n**3 / t["median"]
