"""Tokens/s of the CPU servers with the embedded model at 1, 4 and 8 concurrent streams.

Compares llama.cpp (``llama-server``), ``transformers serve`` (plain and continuous batching) and
in-process ``model.generate`` (the baseline; N streams = one left-padded batch of N), all on the
same prompts, greedy, with the same ``max_tokens``. Prints a table, ratios against the baseline
and against ``transformers serve`` at one stream, and writes JSON + a PNG plot.

    python benchmarks/serve_throughput.py                       # everything, 64 tokens per request
    python benchmarks/serve_throughput.py --configs llamacpp --llamacpp-threads 1,2 --llamacpp-parallel 4,8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
from pathlib import Path

from lw_serve import EMBEDDED_MODEL, LlamaCppBackend, Server, TransformersBackend, resolve_model
from lw_serve.bench import Throughput, measure_client, measure_generate


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    model = resolve_model(EMBEDDED_MODEL)
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
                servers.append((label, LlamaCppBackend(threads=threads or None, parallel=parallel)))
    if "transformers" in configs:
        servers.append((f"transformers dtype={args.transformers_dtype}",
                        TransformersBackend(dtype=args.transformers_dtype)))  # fmt: skip
    if "transformers-cb" in configs:
        servers.append((f"transformers-cb dtype={args.transformers_dtype}",
                        TransformersBackend(continuous_batching=True, dtype=args.transformers_dtype)))  # fmt: skip
    for label, backend in servers:
        with Server(model, backend, startup_timeout=300) as server:  # type: ignore[arg-type]
            for n in args.streams:
                report(asyncio.run(measure_client(server.client, label, n, args.max_tokens)))

    _ratios(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": platform.processor() or platform.machine(), "max_tokens": args.max_tokens,
               "results": [r.as_dict() for r in results]}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    _plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


def _ratios(results: list[Throughput]) -> None:
    generate_1 = next((r for r in results if r.label.startswith("generate") and r.streams == 1), None)
    plain_1 = next((r for r in results if r.label.startswith("transformers ") and r.streams == 1), None)
    print("\naggregate tok/s ratios")
    for r in results:
        parts = []
        if generate_1:
            parts.append(f"{r.aggregate / generate_1.aggregate:5.2f}x generate@1")
        if plain_1:
            parts.append(f"{r.aggregate / plain_1.aggregate:5.2f}x transformers-serve@1")
        print(f"  {r.label:<34} streams={r.streams:<2} " + "  ".join(parts))


def _plot(results: list[Throughput], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label in dict.fromkeys(r.label for r in results):
        rows = [r for r in results if r.label == label]
        ax.plot([r.streams for r in rows], [r.aggregate for r in rows], marker="o", label=label)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_title("Embedded SmolLM2-135M on CPU: decode throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
