"""AgentWrite's presets and length-control settings on the embedded model: length, truncation, loops, lw-data yield.

Starts the embedded SmolLM2-135M on llama.cpp (``lw_serve.Server``), runs each named setting on the same 16
instructions of our own (200-1500 words, none from LongBench-Write) and prints, per setting: documents within ±20 %
of the requested length, median words ÷ requested, truncated / failed / repetitive documents, what lw-data's SFT
filters keep (its defaults, except ``min_words=0``: the short instructions are meant to be short), sections trimmed
or cut, and words/s — with ratios against the first setting, run in the same process.

    python benchmarks/agentwrite_presets.py --settings paper,lw --keep runs/agentwrite-presets

``--keep DIR`` keeps every setting's documents (``DIR/<setting>.jsonl``) and resumes from them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lw_agentwrite import AgentWrite, BatchStats, preset_sampling, run_batch
from lw_core import REPETITION_THRESHOLD, Document, Instruction, read_jsonl, repeated_ngram_ratio
from lw_serve import EMBEDDED_MODEL, LlamaCppBackend, Server

INSTRUCTIONS = [
    ("Write a 200-word product description for a handmade ceramic teapot.", 200),
    ("Write a 250-word letter to a neighbour asking to borrow a ladder for the weekend.", 250),
    ("Write a 300-word blog post about why people should learn to cook at home.", 300),
    ("Write a 400-word news report about a small town opening its first public library.", 400),
    ("Write a 450-word speech for a school sports day about teamwork.", 450),
    ("Write a 500-word short story about a lighthouse keeper who finds a message in a bottle.", 500),
    ("Write a 600-word review of an imaginary science fiction film about life on Mars.", 600),
    ("Write a 700-word explanation of how bees make honey, for curious teenagers.", 700),
    ("Write an 800-word guide for beginners who want to grow vegetables on a balcony.", 800),
    ("Write a 900-word essay on the pros and cons of working from home.", 900),
    ("Write a 1000-word travel guide to a quiet fishing village on a northern coast.", 1000),
    ("Write an 1100-word history of the bicycle, from its invention to today.", 1100),
    ("Write a 1200-word essay on how railways changed daily life in the nineteenth century.", 1200),
    ("Write a 1300-word short story about two friends who get lost in a forest at night.", 1300),
    ("Write a 1400-word report on how a city could cut its traffic noise.", 1400),
    ("Write a 1500-word guide to planning a week-long hiking trip in the mountains.", 1500),
]

RP = {"repeat_penalty": 1.15}
#: name -> (preset, AgentWrite overrides, llama.cpp sampling passed through the client's extra_body)
SETTINGS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "paper": ("paper", {}, {}),
    "lw": ("lw", {}, {}),
    "small": ("small", {}, preset_sampling("small")),
    # the levers, one at a time, on the lw preset as it was before (no fitting, trimming or re-asking)
    "lw-before": (
        "lw",
        {
            "fit_budgets": False,
            "trim_cut_sections": False,
            "trim_loops": False,
            "reask_repetition": None,
            "repetition_limit": None,
        },
        {},
    ),
    "lw-rp1.15": ("lw", {"fit_budgets": False, "trim_loops": False, "reask_repetition": None}, RP),
    "lw-fit-rp1.1": ("lw", {"tokens_per_word": 1.5}, {"repeat_penalty": 1.1}),
    "lw-fit-rp1.15": ("lw", {"tokens_per_word": 1.5}, RP),
    # sections no longer than a small model writes before it stops (or its cap cuts it)
    "small-norp": ("small", {}, {}),
    "small-rp1.1": ("small", {}, {"repeat_penalty": 1.1}),
    "small-rp1.15-dry": ("small", {}, {**RP, "dry_multiplier": 0.8}),
    "small-rp1.15-ctx0": ("small", {"context_sections": 0}, RP),
    "small-rp1.15-ctx1": ("small", {"context_sections": 1}, RP),
    "small-ctx0-short0.8": ("small", {"context_sections": 0, "too_short_ratio": 0.8}, RP),
    "small-tpw1.2": ("small", {"tokens_per_word": 1.2}, RP),
    "small-nocontinue": ("small", {"continue_short": 0}, RP),
    "small-ctx1-short0.8": ("small", {"context_sections": 1, "too_short_ratio": 0.8}, RP),
    "small-ctx0-short0.8-w150": (
        "small",
        {"context_sections": 0, "too_short_ratio": 0.8, "max_section_words": 150, "tokens_per_word": 2.0},
        RP,
    ),
}


@dataclass
class Result:
    name: str
    stats: BatchStats
    documents: list[Document]
    n: int
    kept: int = 0
    rejects: Counter[str] = field(default_factory=Counter)

    def ratios(self) -> list[float]:
        return [d.word_count / d.instruction.length for d in self.documents if d.instruction.length]

    def row(self) -> dict[str, str]:
        n = self.n
        ratios = self.ratios()
        within = sum(0.8 <= r <= 1.2 for r in ratios)
        status = Counter(d.status for d in self.documents)
        loops = sum(repeated_ngram_ratio(d.text) > REPETITION_THRESHOLD for d in self.documents)
        sections = [s for d in self.documents for s in d.sections]
        reasons = Counter(s.finish_reason for s in sections)
        return {
            "setting": self.name,
            "±20%": f"{within}/{n}",
            "median w/req": f"{statistics.median(ratios):.2f}" if ratios else "-",
            "truncated": str(status["truncated"]),
            "failed": str(status["failed"]),
            "looping": str(loops),
            "lw-data kept": f"{self.kept}/{n}",
            "sections": f"{len(sections)}: {reasons['trimmed']} trimmed, {reasons['length']} cut, "
            f"{reasons['repetitive']} rep.",
            "words/s": f"{self.stats.words_per_s:.1f}",
            "tok/s": f"{self.stats.tokens_per_s:.1f}",
            "wall s": f"{self.stats.elapsed_s:.0f}",
        }


def lw_data_yield(path: Path) -> tuple[int, Counter[str]]:
    """What lw-data's SFT filters keep of a documents file (defaults, min_words 0) and why the rest goes."""
    from lw_data import SFTFilters, build_sft, read_documents

    kept, rejects = build_sft(read_documents(path), SFTFilters(min_words=0))
    return kept.height, Counter(rejects["reason"].to_list())


async def run_setting(
    server: Server, name: str, instructions: list[Instruction], out: Path, concurrency: int
) -> Result:
    preset, overrides, extra_body = SETTINGS[name]
    client = server.new_client(concurrency=concurrency, extra_body=extra_body)
    agent = AgentWrite.preset(preset, client, **overrides)
    started = time.perf_counter()
    stats = await run_batch(agent, instructions, out, concurrency=concurrency)
    stats.elapsed_s = time.perf_counter() - started
    await client.aclose()
    documents = list(read_jsonl(out, Document))
    kept, rejects = lw_data_yield(out)
    return Result(name, stats, documents, len(instructions), kept, rejects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="paper,lw", help=f"comma-separated, from: {', '.join(SETTINGS)}")
    parser.add_argument("--parallel", type=int, default=4, help="llama.cpp slots (and instructions in flight)")
    parser.add_argument("--ctx-size", type=int, default=8192, help="context of each slot (the model's is 8192)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (1 is faster on cores shared with other work)")
    parser.add_argument("--keep", type=Path, help="keep documents here (and resume from them)")
    parser.add_argument("--instructions", type=int, default=len(INSTRUCTIONS), help="use n, spread over the lengths")
    args = parser.parse_args()
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")

    step = len(INSTRUCTIONS) / args.instructions
    instructions = [Instruction(prompt=p, length=n) for p, n in INSTRUCTIONS[:: max(1, round(step))]]
    instructions = instructions[: args.instructions]
    backend = LlamaCppBackend(parallel=args.parallel, ctx_size=args.ctx_size, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp, Server(EMBEDDED_MODEL, backend, startup_timeout=300) as server:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for name in names:
            result = asyncio.run(run_setting(server, name, instructions, folder / f"{name}.jsonl", args.parallel))
            print(f"{name}: {result.stats.summary()}", flush=True)
            print(f"  lw-data rejects: {dict(result.rejects) or 'none'}", flush=True)
            results.append(result)

    rows = [r.row() for r in results]
    widths = {k: max(len(k), *(len(row[k]) for row in rows)) for k in rows[0]}
    lengths = [i.length or 0 for i in instructions]
    print(f"\nllama.cpp, {args.threads or 'default'} threads, {args.parallel} slots of {args.ctx_size} tokens; "
          f"{len(instructions)} instructions of "
          f"{min(lengths)}-{max(lengths)} words ({sum(lengths)} in all)")  # fmt: skip
    print("  ".join(k.rjust(w) for k, w in widths.items()))
    for row in rows:
        print("  ".join(row[k].rjust(w) for k, w in widths.items()))
    base = results[0]
    for result in results[1:]:
        speed = result.stats.words_per_s / base.stats.words_per_s if base.stats.words_per_s else float("nan")
        print(f"{result.name} vs {base.name}: words/s {speed:.2f}x, lw-data kept {result.kept} vs {base.kept}")


if __name__ == "__main__":
    main()
