"""A policy server for RL rollouts: the model being trained, exported to GGUF and served by llama.cpp.

``lw_train.train_grpo(config, rollout=PolicyServer())`` samples GRPO's completions here instead of with
``model.generate``: after every optimizer step lw-train saves the weights into an HF folder and calls
:meth:`PolicyServer.sync`, which exports it (:func:`lw_serve.export_gguf`) and restarts ``llama-server`` on it
(llama.cpp cannot swap weights in a running server). :meth:`PolicyServer.generate` sends the prompts as token ids to
llama-server's native ``/completion`` endpoint, all at once over its parallel slots, and returns the completion's
token ids and whether it stopped on an end-of-turn token, which is what TRL's ``rollout_func`` needs.

Sampling matches ``transformers``' where both have the knob: ``top_k=0`` and ``min_p=0`` switch off llama.cpp's
defaults (40 and 0.05), which transformers does not apply. ``repetition_penalty`` becomes llama.cpp's
``repeat_penalty``, which looks back ``repeat_last_n`` tokens (64) instead of the whole text. The f16 export keeps
rollouts on the trained weights to f16 precision; TRL then scores them with the fp32 policy (no importance-sampling
correction: llama.cpp's log-probabilities are not passed on).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from lw_core import run_sync

from lw_serve.backends import LlamaCppBackend
from lw_serve.errors import ServerError
from lw_serve.export import export_gguf
from lw_serve.models import ResolvedModel
from lw_serve.server import Server

__all__ = ["PolicyServer"]

log = logging.getLogger(__name__)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``; 0 elsewhere or once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PolicyServer:
    """llama.cpp serving the current policy for GRPO rollouts; re-exported and restarted on every :meth:`sync`.

    ``backend`` is the llama.cpp configuration (parallel slots, threads, context per slot); ``outtype`` the GGUF
    precision of each export (``f16``; ``q8_0`` decodes faster and drifts further from the trained weights);
    ``workdir`` where the exports go (a temporary folder by default; one file, overwritten each sync).
    ``sync_seconds`` and ``generate_seconds`` record what each call took, and ``server_cpu_seconds`` the CPU time
    the llama-server processes used (read from ``/proc`` before each is stopped; 0 where there is no ``/proc``), for
    the rollout benchmark: on a shared machine CPU time compares paths where wall time cannot.
    """

    def __init__(
        self,
        backend: LlamaCppBackend | None = None,
        *,
        outtype: str = "f16",
        workdir: str | Path | None = None,
        startup_timeout: float = 120.0,
        request_timeout: float = 3600.0,
    ) -> None:
        self.backend = backend or LlamaCppBackend(parallel=8, ctx_size=4096)
        self.outtype = outtype
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="lw-policy-"))
        self.startup_timeout, self.request_timeout = startup_timeout, request_timeout
        self.server: Server | None = None
        self.sync_seconds: list[float] = []
        self.generate_seconds: list[float] = []
        self.server_cpu_seconds = 0.0

    def sync(self, folder: Path) -> None:
        """Serve the weights in the HF ``folder``: export them to GGUF, then restart llama-server on the export."""
        began = time.perf_counter()
        self.workdir.mkdir(parents=True, exist_ok=True)
        gguf = export_gguf(folder, self.workdir / "policy.gguf", self.outtype, force=True)
        self.stop()
        server = Server(
            ResolvedModel(name="policy", gguf=gguf),
            self.backend,
            startup_timeout=self.startup_timeout,
            log_path=self.workdir / "llama-server.log",
        )
        self.server = server.start()
        self.sync_seconds.append(time.perf_counter() - began)
        log.debug("policy synced from %s in %.2f s", folder, self.sync_seconds[-1])

    def generate(
        self,
        prompt_ids: list[list[int]],
        *,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        seed: int = 0,
    ) -> list[tuple[list[int], bool]]:
        """One completion per prompt (token ids in the model's chat template): its token ids and whether it
        stopped on an end-of-turn token (rather than at ``max_tokens``). Prompts run concurrently over the slots;
        prompt ``i`` samples with ``seed + i``, so equal prompts in a GRPO group differ."""
        began = time.perf_counter()
        results = run_sync(
            self.agenerate(
                prompt_ids, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                repetition_penalty=repetition_penalty, seed=seed,
            )
        )  # fmt: skip
        self.generate_seconds.append(time.perf_counter() - began)
        return results

    async def agenerate(
        self,
        prompt_ids: list[list[int]],
        *,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        seed: int = 0,
    ) -> list[tuple[list[int], bool]]:
        """:meth:`generate`, for callers with an event loop."""
        if self.server is None or not self.server.running:
            raise ServerError("the policy server is not running: call sync(folder) first")
        url = self.server.base_url.removesuffix("/v1") + "/completion"
        headers = {"Authorization": f"Bearer {self.backend.api_key}"} if self.backend.api_key else {}
        slots = asyncio.Semaphore(max(1, self.backend.parallel))

        async def one(http: httpx.AsyncClient, index: int, ids: list[int]) -> tuple[list[int], bool]:
            body = {
                "prompt": ids, "n_predict": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
                "min_p": 0.0, "repeat_penalty": repetition_penalty, "seed": seed + index, "return_tokens": True,
                "cache_prompt": True, "stream": False,
            }  # fmt: skip
            async with slots:
                try:
                    response = await http.post(url, json=body, headers=headers)
                except httpx.HTTPError as error:
                    raise self._failed(f"{type(error).__name__}: {error}") from None
            if response.status_code != 200:
                raise self._failed(f"HTTP {response.status_code}: {response.text[:300]}")
            answer: dict[str, Any] = response.json()
            return [int(t) for t in answer.get("tokens", [])], answer.get("stop_type") == "eos"

        async with httpx.AsyncClient(timeout=self.request_timeout) as http:
            return list(await asyncio.gather(*(one(http, i, ids) for i, ids in enumerate(prompt_ids))))

    def _failed(self, what: str) -> ServerError:
        tail = self.server.log_tail(20) if self.server is not None else ""
        return ServerError(f"policy server rollout failed ({what}); llama-server log tail:\n{tail}")

    def stop(self) -> None:
        """Stop the server (the exports stay in ``workdir``)."""
        if self.server is not None:
            self.server_cpu_seconds += sum(_cpu_seconds(pid) for pid in self.server.pids)
            self.server.stop()
            self.server = None

    def close(self) -> None:
        """Stop the server and remove a temporary workdir."""
        self.stop()
        if self._own_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PolicyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
