"""How busy the machine's CPUs were while something ran, from ``/proc/stat`` (Linux).

The first line of ``/proc/stat`` counts, since boot, the clock ticks all CPUs spent in each
state: ``user nice system idle iowait irq softirq steal ...``. Between two readings:

- **steal**: time the hypervisor gave to other virtual machines (a shared VM's timings vary
  with it);
- **nice**: time of processes running at a positive nice value (e.g. a background training at
  nice 19, which yields to a measurement at nice 0);
- **busy**: user + system + irq + softirq time of everything at nice 0, including the measured
  process itself; :class:`CpuWindow` subtracts the CPU time of the measured child processes to
  give what *others* used.

Shares are of all CPUs' time over the window (100% = every core busy). Where ``/proc/stat``
is missing, every share is None.
"""

import os
import resource
import time

USER, NICE, SYSTEM, IDLE, IOWAIT, IRQ, SOFTIRQ, STEAL = range(8)


def cpu_ticks():
    """The first line of ``/proc/stat`` as integers, or None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return values if len(values) >= 8 else None


def shares(start, end, own_cpu_seconds=0.0):
    """``{"steal", "nice", "busy", "others_busy"}`` in percent of all CPU time between two
    :func:`cpu_ticks` readings (None where either is missing); ``others_busy`` is ``busy`` less
    ``own_cpu_seconds`` (the measured processes' user + system time), at least 0."""
    if not start or not end:
        return {"steal": None, "nice": None, "busy": None, "others_busy": None}
    delta = [b - a for a, b in zip(start, end)]
    total = sum(delta[:8])
    if total <= 0:
        return {"steal": None, "nice": None, "busy": None, "others_busy": None}
    busy = delta[USER] + delta[SYSTEM] + delta[IRQ] + delta[SOFTIRQ]
    own = own_cpu_seconds * os.sysconf("SC_CLK_TCK")
    pct = lambda ticks: round(100 * ticks / total, 1)  # noqa: E731
    return {"steal": pct(delta[STEAL]), "nice": pct(delta[NICE]), "busy": pct(busy),
            "others_busy": pct(max(0.0, busy - own))}


def _children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """The CPU shares (:func:`shares`) while a block runs; the CPU time of child processes
    that end inside the block (e.g. ``subprocess.run``) counts as the measured one's own.

    >>> with CpuWindow() as window:
    ...     pass
    >>> sorted(window.shares)
    ['busy', 'nice', 'others_busy', 'steal']
    """

    def __enter__(self):
        self.start, self.children = cpu_ticks(), _children_cpu_seconds()
        return self

    def __exit__(self, *exc):
        own = _children_cpu_seconds() - self.children
        self.shares = shares(self.start, cpu_ticks(), own)


def busy_now(seconds=1.0):
    """The shares over the next ``seconds`` of doing nothing (what the rest of the machine uses)."""
    start = cpu_ticks()
    time.sleep(seconds)
    return shares(start, cpu_ticks())


def wait_for_quiet(max_busy, timeout, sample_seconds=1.0, log=print):
    """Wait until others' busy share (nice 0, plus steal) over ``sample_seconds`` is at most
    ``max_busy`` percent, or ``timeout`` seconds have passed.

    Processes at a positive nice value do not count: they yield the CPU to a nice-0 measurement.

    Returns:
        ``(seconds waited, the last shares measured)``; the shares say how quiet it got when the
        wait timed out.
    """
    start = time.perf_counter()
    while True:
        now = busy_now(sample_seconds)
        if now["busy"] is None:
            return time.perf_counter() - start, now
        load = now["busy"] + now["steal"]
        waited = time.perf_counter() - start
        if load <= max_busy or waited >= timeout:
            if load > max_busy:
                log(f"benchmark: the CPU stayed {load:.0f}% busy for {waited:.0f} s (asked for <= {max_busy:g}%); going on")
            return waited, now
