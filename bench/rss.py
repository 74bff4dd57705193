"""Peak resident memory of the current process, for the benchmarks and the memory test."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.

    ``VmHWM`` belongs to the process's own address space, so it starts fresh at exec;
    ``ru_maxrss`` (the fallback off Linux) keeps the parent's peak across fork+exec, which
    would hide the child's own peak whenever the parent was bigger.
    """
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
