"""The ``lw-serve`` command line: ``up`` (serve until Ctrl-C), ``models`` (list/resolve), ``export-gguf``, ``bench``."""

from __future__ import annotations

import asyncio
import enum
import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from lw_core import atomic_write
from lw_core.cli import SERVER_KEY_ENV, ApiKeyFile, api_key, new_app, progress_bar, user_errors
from rich.console import Console
from rich.table import Table

from lw_serve.backends import BACKENDS, Backend, LlamaCppBackend, SGLangBackend, TransformersBackend
from lw_serve.errors import ServeError, ServerError
from lw_serve.export import export_gguf
from lw_serve.models import EMBEDDED_MODEL, known_models, resolve_model

app = new_app(
    "lw-serve", "Serve models for lw: the embedded SmolLM2 on CPU (llama.cpp, transformers serve) or SGLang on GPUs."
)
console = Console()
err = Console(stderr=True)


class RepackMode(enum.StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


class OutType(enum.StrEnum):
    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"


def _backend(
    name: str,
    *,
    threads: int | None,
    ctx_size: int | None,
    parallel: int | None,
    continuous_batching: bool,
    replicas: int,
    tp_size: int,
    api_key: str | None,
    outtype: str = "f16",
    repack: RepackMode = RepackMode.auto,
) -> Backend:
    if replicas > 1 and name != "sglang":
        raise typer.BadParameter("replicas need --backend sglang", param_hint="--replicas")
    if name == "llamacpp":
        defaults = LlamaCppBackend()
        return LlamaCppBackend(threads=threads, api_key=api_key, ctx_size=ctx_size or defaults.ctx_size,
                               parallel=parallel or defaults.parallel, export_outtype=outtype,
                               repack=repack.value)  # fmt: skip
    if name == "transformers":
        if api_key:
            raise ServeError("transformers serve cannot require an API key: use --backend llamacpp or sglang")
        return TransformersBackend(continuous_batching=continuous_batching)
    if name == "sglang":
        context = ctx_size or SGLangBackend().context_length
        return SGLangBackend(replicas=replicas, tp_size=tp_size, api_key=api_key, context_length=context)
    raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint="--backend")


RepackOpt = Annotated[
    RepackMode,
    typer.Option(
        help="llamacpp: weight repacking for the CPU's fastest kernels; auto: on, unless this build died repacking "
        "on this CPU (then --no-repack, remembered; see `lw-serve doctor`)"
    ),
]
BackendOpt = Annotated[
    str | None, typer.Option("--backend", "-b", help=f"{' | '.join(BACKENDS)}; default: best one installed")
]


@app.command()
@user_errors
def up(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered name, .gguf file, HF folder or hub id")] = (
        EMBEDDED_MODEL
    ),
    backend: BackendOpt = None,
    name: Annotated[str | None, typer.Option(help="Served model name (what clients send as model)")] = None,
    host: Annotated[str, typer.Option(help="Listen address; 127.0.0.1 unless you mean to expose it")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port; default: a free one")] = None,
    threads: Annotated[int | None, typer.Option(help="llamacpp: CPU threads (default: all usable cores)")] = None,
    ctx_size: Annotated[int | None, typer.Option(help="Context length (llamacpp: shared by all slots)")] = None,
    parallel: Annotated[int | None, typer.Option(help="llamacpp: parallel slots")] = None,
    continuous_batching: Annotated[
        bool, typer.Option(help="transformers: continuous batching (default on, as in TransformersBackend)")
    ] = TransformersBackend.continuous_batching,
    replicas: Annotated[int, typer.Option(help="sglang: replicas behind the SGLang router")] = 1,
    tp_size: Annotated[int, typer.Option(help="sglang: tensor-parallel size per replica")] = 1,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", metavar="NAME", help="Require the API key this variable holds, if set.")
    ] = SERVER_KEY_ENV,
    api_key_file: ApiKeyFile = None,
    outtype: Annotated[OutType, typer.Option(help="llamacpp: GGUF type when an HF folder is exported")] = OutType.f16,
    repack: RepackOpt = RepackMode.auto,
    log_file: Annotated[Path | None, typer.Option(help="Keep the server log here")] = None,
    startup_timeout: Annotated[float, typer.Option(help="Seconds to wait for health")] = 300.0,
) -> None:
    """Start a server and block until Ctrl-C (or SIGTERM); prints the base URL and model name.

    An HF folder (e.g. lw-train's output) is served by llama.cpp through a GGUF export made once
    into $LW_HOME/gguf, unless --backend says otherwise. Clients must then send the key from $LW_SERVE_API_KEY (or
    --api-key-env / --api-key-file); keys are never taken on the command line, which every local user can read.
    """
    from lw_serve.backends import default_backend
    from lw_serve.server import Server

    key = api_key(api_key_env, api_key_file, default_env=SERVER_KEY_ENV)
    resolved = resolve_model(model, name=name)
    chosen = _backend(backend or default_backend(resolved).name, threads=threads, ctx_size=ctx_size,
                      parallel=parallel, continuous_batching=continuous_batching, replicas=replicas,
                      tp_size=tp_size, api_key=key, outtype=outtype.value, repack=repack)  # fmt: skip
    server = Server(resolved, chosen, host=host, port=port, startup_timeout=startup_timeout,
                    log_path=log_file)  # fmt: skip
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with console.status(f"starting {server.backend.name} for {server.model_name} ..."):
            server.start()
        with server:
            console.print(f"base_url: {server.base_url}", highlight=False)
            console.print(f"model:    {server.model_name}", highlight=False)
            console.print(f"backend:  {server.backend.name} {server.capabilities}", highlight=False)
            console.print(
                f"use it: OpenAIChatClient(base_url={server.base_url!r}, model={server.model_name!r})",
                style="dim", highlight=False, soft_wrap=True,
            )  # fmt: skip
            console.print("Ctrl-C to stop", style="dim")
            try:
                while not stop.wait(0.5):
                    if not server.running:
                        raise ServerError(f"the server exited unexpectedly; log tail:\n{server.log_tail()}")
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print("stopped")


@app.command()
@user_errors
def models(
    ref: Annotated[str | None, typer.Argument(help="Resolve this name, .gguf file, folder or hub id")] = None,
    hf: Annotated[bool, typer.Option("--hf", help="Print the HF folder, converting a GGUF once if needed")] = False,
) -> None:
    """List the registered models, or resolve one (``--hf``: the HF folder training and transformers load)."""
    if ref is None:
        table = Table("name", "what", "GGUF")
        for known, what in known_models().items():
            resolved = resolve_model(known)
            table.add_row(known, what, str(resolved.gguf))
        console.print(table)
        return
    resolved = resolve_model(ref)
    if hf:
        console.print(resolved.hf_folder(), highlight=False, soft_wrap=True)
        return
    console.print_json(json.dumps({"name": resolved.name, "gguf": str(resolved.gguf) if resolved.gguf else None,
                                   "hf": resolved.hf}))  # fmt: skip


@app.command("export-gguf")
@user_errors
def export_gguf_command(
    src: Annotated[str, typer.Argument(help="HF model folder, or a registered name (its converted HF folder)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The GGUF file to write")],
    outtype: Annotated[OutType, typer.Option(help="Weight type (norms and biases stay f32)")] = OutType.f16,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists")] = False,
) -> None:
    """Export a Llama, Mistral or Qwen2 HF folder (weights, tokenizer, chat template) to one GGUF file for llama.cpp."""
    folder = resolve_model(src).hf_folder() if src in known_models() else src
    with progress_bar(err, transient=True) as bar:
        task = bar.add_task(f"exporting {Path(folder).name}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        written = export_gguf(folder, out, outtype.value, force=force, progress=progress)
    console.print(f"wrote {written} ({written.stat().st_size / 2**20:.0f} MiB, {outtype.value})", highlight=False)


@app.command()
@user_errors
def bench(
    model: Annotated[str, typer.Option("--model", "-m")] = EMBEDDED_MODEL,
    backend: Annotated[list[str], typer.Option("--backend", "-b", help="Repeat to compare backends")] = [  # noqa: B006
        "llamacpp"
    ],
    streams: Annotated[str, typer.Option(help="Comma-separated concurrent stream counts")] = "1,4,8",
    max_tokens: Annotated[int, typer.Option(help="Tokens per request")] = 64,
    baseline: Annotated[bool, typer.Option(help="Also time in-process model.generate")] = False,
    repack: RepackOpt = RepackMode.auto,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the figures here as JSON")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", hidden=True, help="Deprecated: --out")] = None,
) -> None:
    """Tokens/s at N concurrent streams per backend (``transformers-cb`` = continuous batching)."""
    from lw_serve.bench import measure_client, measure_generate, parse_streams
    from lw_serve.server import Server

    if json_out is not None:  # the old spelling of --out, for one release
        err.print("[yellow]warning:[/yellow] lw-serve bench: --json FILE is deprecated, use --out", highlight=False)
        out = out or json_out

    try:
        counts = parse_streams(streams)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--streams") from None
    results = []
    resolved = resolve_model(model)
    for label in backend:
        chosen = _backend(label.removesuffix("-cb"), threads=None, ctx_size=None, parallel=max(counts),
                          continuous_batching=label == "transformers-cb", replicas=1, tp_size=1,
                          api_key=None, repack=repack)  # fmt: skip
        with console.status(f"{label}: starting"), Server(resolved, chosen) as server:
            for n in counts:
                results.append(asyncio.run(measure_client(server.client, label, n, max_tokens)))
                console.print(_row(results[-1]), highlight=False)
    if baseline:
        for r in measure_generate(resolved.hf_folder(), counts, max_tokens):
            results.append(r)
            console.print(_row(r), highlight=False)
    if out:
        atomic_write(out, json.dumps([r.as_dict() for r in results], indent=2) + "\n")


@app.command()
@user_errors
def doctor(
    probe: Annotated[
        bool, typer.Option(help="Also start the embedded model on llama.cpp once (repack auto) and time it")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the findings as JSON")] = False,
) -> None:
    """What this machine offers the llama.cpp backend: the CPU, its kernel flags, the llama-server build, and
    whether ``repack=auto`` repacks weights here (and why)."""
    from lw_serve.diagnose import diagnose, probe_start

    report = diagnose()
    if probe:
        report["probe"] = probe_start()
    if json_out:
        console.print_json(json.dumps(report))
        return
    for key, value in report.items():
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        console.print(f"{key + ':':<16} {shown}", highlight=False, soft_wrap=True)


def _row(r: object) -> str:
    from lw_serve.bench import Throughput

    assert isinstance(r, Throughput)
    return f"{r.label:<24} streams={r.streams:<2} aggregate={r.aggregate:7.1f} tok/s  per-stream={r.per_stream:6.1f}"


if __name__ == "__main__":
    app()
