"""What this CPU is, and what a llama.cpp build was seen to do on it: the memory behind ``repack="auto"``.

llama.cpp repacks quantized weights at load time into layouts for the CPU's fastest kernels (its CPU "extra
buffers"); on a CPU whose flags promise Intel AMX it repacks Q4/Q8 weights for AMX tiles. Cloud VMs routinely
advertise AMX without the hypervisor supporting it: the first tile instruction then kills ``llama-server`` with
SIGILL (or SIGSEGV) during its warm-up, before it is healthy (seen on 2-core Xeon VMs; ``docs/decisions.md``).
:class:`~lw_serve.Server` then starts it once more with ``--no-repack`` and :func:`record_repack_fault` remembers
the fault for this build on this CPU, so later starts skip the crash. Nothing is remembered for CPUs where
repacking works, so they keep its speed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lw_core import atomic_write, cache_dir
from lw_core.cache import locked

log = logging.getLogger(__name__)

#: CPU flags that decide which llama.cpp kernels run (as /proc/cpuinfo spells them).
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
#: Signals by which a CPU refuses an instruction it advertised (SIGILL) or a kernel runs off its tiles.
FAULT_SIGNALS = (signal.SIGILL, signal.SIGSEGV, signal.SIGBUS)
_FILE = "repack-faults.json"


@dataclass(frozen=True)
class CPUInfo:
    """The CPU model and the flags llama.cpp's kernel choice depends on."""

    model: str
    flags: frozenset[str]

    @property
    def kernel_flags(self) -> list[str]:
        """:data:`KERNEL_FLAGS` this CPU advertises, in that order."""
        return [f for f in KERNEL_FLAGS if f in self.flags]

    @property
    def advertises_amx(self) -> bool:
        return "amx_tile" in self.flags

    @property
    def fingerprint(self) -> str:
        """Stable id of the CPU model and all its flags (a VM moved to other hardware gets a new one)."""
        text = self.model + "\0" + " ".join(sorted(self.flags))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CPUInfo:
    """This machine's :class:`CPUInfo` (from ``/proc/cpuinfo`` on Linux; elsewhere the model only, no flags)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return CPUInfo(platform.processor() or platform.machine(), frozenset())
    model, flags = "", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = value
        if model and flags:
            break
    return CPUInfo(model or platform.machine(), frozenset(flags.split()))


def binary_fingerprint(binary: str | os.PathLike[str]) -> str:
    """Stable id of one build of a binary: its resolved path, size and modification time (a rebuild changes it)."""
    path = Path(binary).resolve()
    try:
        stat = path.stat()
    except OSError:
        return hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def _key(binary: str | os.PathLike[str], cpu: CPUInfo) -> str:
    return f"{binary_fingerprint(binary)}-{cpu.fingerprint}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def repack_fault(
    binary: str | os.PathLike[str], cpu: CPUInfo | None = None, cache: Path | None = None
) -> dict[str, Any] | None:
    """The fault recorded for repacking with this build on this CPU (signal, when, CPU model), or None."""
    folder = cache or cache_dir("llamacpp")
    entry = _read(folder / _FILE).get(_key(binary, cpu or cpu_info()))
    return entry if isinstance(entry, dict) else None


def record_repack_fault(
    binary: str | os.PathLike[str], signum: int, cpu: CPUInfo | None = None, cache: Path | None = None
) -> None:
    """Remember that this build of ``binary`` died by ``signum`` at start-up on this CPU while repacking weights."""
    cpu = cpu or cpu_info()
    folder = cache or cache_dir("llamacpp")
    entry = {
        "signal": signal_name(signum),
        "binary": str(Path(binary).resolve()),
        "cpu": cpu.model,
        "flags": cpu.kernel_flags,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with locked(folder / f".{_FILE}.lock"):
        data = _read(folder / _FILE)
        data[_key(binary, cpu)] = entry
        atomic_write(folder / _FILE, json.dumps(data, indent=2) + "\n")
    log.warning(
        "%s died by %s while repacking weights on this CPU (%s); starting it with --no-repack now and on every "
        "later start of this build on this CPU (forget it: delete %s)",
        Path(binary).name, entry["signal"], cpu.model, folder / _FILE,
    )  # fmt: skip


def signal_name(signum: int) -> str:
    """``SIGILL`` for 4, and so on; ``signal N`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
