"""Words/s of AgentWrite's batch runner at concurrency 1 vs N against one real server, and its prefix-cache hits.

Starts the embedded SmolLM2-135M on llama.cpp (``lw_serve.Server``) with N parallel slots, runs the
same-shaped workload (different topics, so the second run gets no free cache hits from the first)
sequentially and then N at a time, and prints the ratio. The goal is >= 4x at N = 8 on a server
that batches; on a 2-core CPU the server, not the runner, is the limit.

    python benchmarks/agentwrite_throughput.py --instructions 8 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from lw_agentwrite import AgentWrite, BatchStats, run_batch
from lw_core import Instruction
from lw_serve import EMBEDDED_MODEL, LlamaCppBackend, Server

TOPICS = [
    "the sea", "mountains", "a library", "trains", "bees", "winter", "a market", "bridges", "the moon", "bread",
    "rivers", "clocks", "forests", "lighthouses", "deserts", "kites", "gardens", "music", "rain", "castles",
]  # fmt: skip


def workload(first: int, n: int, length: int) -> list[Instruction]:
    return [
        Instruction(
            prompt=f"Write a {length}-word short essay about {TOPICS[(first + i) % len(TOPICS)]}.", length=length
        )
        for i in range(n)
    ]


async def measure(
    server: Server, instructions: list[Instruction], concurrency: int, section_words: int, out: Path
) -> BatchStats:
    client = server.new_client(concurrency=concurrency)
    agent = AgentWrite(
        client, temperature=0.0, tokens_per_word=1.5, max_section_words=section_words, plan_max_tokens=300
    )
    stats = await run_batch(agent, instructions, out, concurrency=concurrency)
    await client.aclose()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=8, help="instructions in the concurrent run")
    parser.add_argument("--sequential", type=int, default=4, help="instructions in the sequential run (a rate)")
    parser.add_argument("--concurrency", type=int, default=8, help="the concurrent run's concurrency (and slots)")
    parser.add_argument("--length", type=int, default=120, help="requested words per instruction")
    parser.add_argument("--section-words", type=int, default=60, help="most words per section (sets the sections)")
    args = parser.parse_args()

    backend = LlamaCppBackend(parallel=args.concurrency, ctx_size=2048)
    with Server(EMBEDDED_MODEL, backend, startup_timeout=300) as server, tempfile.TemporaryDirectory() as tmp:
        results = {}
        for run, (concurrency, n) in enumerate(((1, args.sequential), (args.concurrency, args.instructions))):
            instructions = workload(run * len(TOPICS) // 2, n, args.length)
            out = Path(tmp) / f"c{concurrency}.jsonl"
            stats = asyncio.run(measure(server, instructions, concurrency, args.section_words, out))
            results[concurrency] = stats
            print(f"concurrency {concurrency}: {stats.summary()}", flush=True)
    sequential, concurrent = results[1], results[args.concurrency]
    print(
        f"\nbackend llama.cpp, {args.concurrency} slots; {args.sequential} then {args.instructions} instructions of "
        f"{args.length} words in sections of <= {args.section_words}"
    )
    print(f"{'concurrency':>12} {'words/s':>9} {'tokens/s':>9} {'wall s':>8} {'prefix-cache hits':>18}")
    for concurrency, stats in results.items():
        cached = f"{stats.cached_fraction:.0%}" if stats.cached_fraction is not None else "n/a"
        row = f"{concurrency:>12} {stats.words_per_s:>9.1f} {stats.tokens_per_s:>9.1f} {stats.elapsed_s:>8.1f}"
        print(f"{row} {cached:>18}")
    ratio = concurrent.words_per_s / sequential.words_per_s if sequential.words_per_s else float("nan")
    print(f"speed-up at concurrency {args.concurrency}: {ratio:.2f}x words/s (goal >= 4x on a batching server)")


if __name__ == "__main__":
    main()
