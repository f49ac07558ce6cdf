"""This process's memory figures from ``/proc/self/status`` (Linux), for the benchmarks; imports nothing heavy."""

from __future__ import annotations


def status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status``: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")
