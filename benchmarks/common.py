"""What every benchmark shares: offline model loading, a tagged stderr log, timing, the machine description.

Importing this module sets ``HF_HUB_OFFLINE`` and ``TOKENIZERS_PARALLELISM`` (unless already set), so a
benchmark never reaches the hub and the tokenizers never fork-warn in the middle of a measurement.
"""
from __future__ import annotations

import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# Packages whose versions a result records (None: not installed).
PACKAGES = ("torch", "sentence-transformers", "transformers", "apache-beam", "opensearch-py", "onnxruntime", "openvino", "nncf")
# Libraries that log at INFO/WARNING per batch or per request: silenced so the benchmark's own lines stay readable.
NOISY_LOGGERS = ("apache_beam", "nncf", "onnxruntime", "sentence_transformers", "transformers", "opensearch", "urllib3")


def logger(tag: str) -> Callable[[str], None]:
    """A ``log(msg)`` printing ``[tag HH:MM:SS] msg`` to stderr (stdout stays for tables and results)."""

    def log(msg: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return log


def timed_cpu(fn: Callable[[], T]) -> tuple[float, float, T]:
    """(wall seconds, process CPU seconds of every thread, result) of ``fn()``: on a loaded machine CPU is the steadier."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(wall seconds, result) of ``fn()``."""
    seconds, _, out = timed_cpu(fn)
    return seconds, out


def load_average(digits: int | None = None) -> list[float]:
    """The 1, 5 and 15 minute load averages (rounded to ``digits`` when given)."""
    return [x if digits is None else round(x, digits) for x in os.getloadavg()]


def describe_machine() -> dict[str, Any]:
    """CPU model, cores, memory (GiB), platform, Python and the versions of PACKAGES."""
    import importlib.metadata as md

    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name", lambda v: v) or platform.processor() or "",
        "cores": os.cpu_count(),
        "memory_gib": _proc_field("/proc/meminfo", "MemTotal", lambda v: round(int(v.split()[0]) / 1024**2, 1)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {pkg: _version(md, pkg) for pkg in PACKAGES},
    }


def machine_info() -> dict[str, Any]:
    """The machine's description and its load average now (``load_average_start``), taken as a run starts."""
    return {**describe_machine(), "load_average_start": load_average()}


def quiet_logging() -> None:
    """WARNING for the root logger, ERROR for the libraries that would flood the benchmark's output."""
    logging.basicConfig(level=logging.WARNING)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _proc_field(path: str, key: str, convert: Callable[[str], Any]) -> Any:
    """The first ``key: value`` line of a /proc file, converted; None where the file or the line is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return convert(line.split(":", 1)[1].strip())
    except OSError:
        pass
    return None


def _version(md: Any, pkg: str) -> str | None:
    try:
        return str(md.version(pkg))
    except md.PackageNotFoundError:
        return None
