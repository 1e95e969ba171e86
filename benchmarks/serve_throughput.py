"""Tokens/s of the CPU servers at 1, 4 and 8 concurrent streams, for the embedded model or a trained checkpoint.

Compares llama.cpp (``llama-server``; an HF folder is served from its GGUF export), ``transformers
serve`` (plain and continuous batching) and in-process ``model.generate`` (the baseline; N streams
= one left-padded batch of N), all on the same prompts, greedy, with the same ``max_tokens``.
Prints a table, ratios against the baseline, against ``transformers serve`` at one stream and
against ``transformers serve --continuous-batching`` at the same streams, and writes JSON + a PNG.

    python benchmarks/serve_throughput.py                       # everything, 64 tokens per request
    python benchmarks/serve_throughput.py --configs llamacpp --llamacpp-threads 1,2 --llamacpp-parallel 4,8
    # a trained checkpoint (a few AdamW steps on the embedded model): its export on llama.cpp vs transformers serve
    python benchmarks/serve_throughput.py --finetune-steps 4 --configs llamacpp,transformers-cb
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
from pathlib import Path

from lw_serve import EMBEDDED_MODEL, LlamaCppBackend, ResolvedModel, Server, TransformersBackend, resolve_model
from lw_serve.bench import PROMPTS, Throughput, measure_client, measure_generate


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED_MODEL, help="registered name, .gguf file or HF folder")
    parser.add_argument("--finetune-steps", type=int, default=0,
                        help="first train the model this many AdamW steps and benchmark that checkpoint")  # fmt: skip
    parser.add_argument("--outtype", default="f16", help="GGUF type of an HF folder's export (llamacpp)")
    parser.add_argument("--streams", type=_ints, default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--configs", default="generate,llamacpp,transformers,transformers-cb")
    parser.add_argument("--llamacpp-threads", type=_ints, default=[0], help="0 = all usable cores")
    parser.add_argument("--llamacpp-parallel", type=_ints, default=[8])
    parser.add_argument("--transformers-dtype", default="auto")
    parser.add_argument("--generate-dtype", default="float32")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serve_throughput"))
    args = parser.parse_args()
    configs = args.configs.split(",")
    model = resolve_model(args.model)
    if args.finetune_steps:
        model = _finetune(model, args.finetune_steps, args.out.parent / "checkpoint")
        print(f"benchmarking the trained checkpoint {model.hf}", flush=True)
    results: list[Throughput] = []

    def report(r: Throughput) -> None:
        results.append(r)
        print(f"{r.label:<34} streams={r.streams:<2} tokens={r.tokens:<4} {r.seconds:6.1f}s  "
              f"aggregate={r.aggregate:6.1f} tok/s  per-stream={r.per_stream:6.1f} tok/s", flush=True)  # fmt: skip

    if "generate" in configs:
        for r in measure_generate(model.hf_folder(), args.streams, args.max_tokens, dtype=args.generate_dtype):
            report(r)
    servers: list[tuple[str, object]] = []
    if "llamacpp" in configs:
        for threads in args.llamacpp_threads:
            for parallel in args.llamacpp_parallel:
                label = f"llamacpp threads={threads or 'all'} slots={parallel}"
                backend = LlamaCppBackend(threads=threads or None, parallel=parallel, export_outtype=args.outtype)
                servers.append((label + ("" if model.is_gguf else f" {args.outtype}"), backend))
    if "transformers" in configs:
        servers.append((f"transformers dtype={args.transformers_dtype}",
                        TransformersBackend(continuous_batching=False, dtype=args.transformers_dtype)))  # fmt: skip
    if "transformers-cb" in configs:
        servers.append((f"transformers-cb dtype={args.transformers_dtype}",
                        TransformersBackend(continuous_batching=True, dtype=args.transformers_dtype)))  # fmt: skip
    for label, backend in servers:
        with Server(model, backend, startup_timeout=300) as server:  # type: ignore[arg-type]
            for n in args.streams:
                report(asyncio.run(measure_client(server.client, label, n, args.max_tokens)))

    _ratios(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": platform.processor() or platform.machine(), "model": str(model.gguf or model.hf),
               "max_tokens": args.max_tokens, "results": [r.as_dict() for r in results]}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    _plot(results, args.out.with_suffix(".png"), model.name)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


def _finetune(model: ResolvedModel, steps: int, folder: Path) -> ResolvedModel:
    """A stand-in for lw-train's output: the HF folder after ``steps`` AdamW steps on a few chats (changed weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = model.hf_folder()
    tokenizer = AutoTokenizer.from_pretrained(source)
    net = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-5)
    torch.manual_seed(0)
    net.train()
    for step in range(steps):
        answer = "Here is a long, careful answer in several sections. " * 8
        chat = [{"role": "user", "content": PROMPTS[step % len(PROMPTS)]}, {"role": "assistant", "content": answer}]
        ids = tokenizer.apply_chat_template(chat, return_tensors="pt", return_dict=True)["input_ids"]
        loss = net(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(f"finetune step {step + 1}/{steps}: loss {loss.item():.3f}", flush=True)
    net.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return resolve_model(folder, name="trained")


def _ratios(results: list[Throughput]) -> None:
    generate_1 = next((r for r in results if r.label.startswith("generate") and r.streams == 1), None)
    plain_1 = next((r for r in results if r.label.startswith("transformers ") and r.streams == 1), None)
    batched = {r.streams: r for r in results if r.label.startswith("transformers-cb")}
    print("\naggregate tok/s ratios")
    for r in results:
        parts = []
        if generate_1:
            parts.append(f"{r.aggregate / generate_1.aggregate:5.2f}x generate@1")
        if plain_1:
            parts.append(f"{r.aggregate / plain_1.aggregate:5.2f}x transformers-serve@1")
        if r.streams in batched and not r.label.startswith("transformers-cb"):
            parts.append(f"{r.aggregate / batched[r.streams].aggregate:5.2f}x transformers-serve-cb@{r.streams}")
        print(f"  {r.label:<34} streams={r.streams:<2} " + "  ".join(parts))


def _plot(results: list[Throughput], path: Path, model: str) -> None:
    """A PNG without touching pyplot's global backend (Figure + Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label in dict.fromkeys(r.label for r in results):
        rows = [r for r in results if r.label == label]
        ax.plot([r.streams for r in rows], [r.aggregate for r in rows], marker="o", label=label)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_title(f"{model} on CPU: decode throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
