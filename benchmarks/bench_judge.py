"""Judge prompts and reply readers on the embedded model: how many replies give six scores, and do they anchor?

Starts the embedded SmolLM2-135M on llama.cpp (``lw_serve.Server``), answers N English LongBench-Write prompts
with the paper's sampling, then asks the same model to judge every answer in several settings — the paper's
``judge.txt``; our ``lw`` template; our former template, whose example JSON showed every score as 1; each with or
without JSON-schema output (``+schema``; the ``lw`` preset asks for it when the server supports it, the paper's
never does) — and reads every reply with both readers (the paper's ``eval_quality.py`` reading and our tolerant
one). Prints, per setting: replies that yield six scores under each reader, judgments whose six scores are all 1
(the anchor), mean S_q, and seconds; ratios against the first setting read the paper's way, all in this process.

    LW_DATA_DIR=../shared/data python benchmarks/bench_judge.py [--n 8] [--settings paper,lw+schema,...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from lw_bench import JudgmentParseError, judge_prompt, load_items, load_template, parse_judgment
from lw_bench.judging import JUDGMENT_SCHEMA, _fill_once
from lw_core import ChatClient, Judgment, json_schema_format, quality_score
from lw_serve import EMBEDDED_MODEL, Server

ALL_ONES_EXAMPLE = (
    '{"Analysis": "...", "Relevance": 1, "Accuracy": 1, "Coherence": 1, "Clarity": 1, "Breadth and Depth": 1, '
    '"Reading Experience": 1}'
)


SETTINGS = ("paper", "lw", "former-lw", "paper+schema", "lw+schema", "former-lw+schema")


def former_template() -> str:
    """Our template before this change: the same text, but its example JSON shows every score as 1."""
    template = load_template(preset="lw")
    start = template.rindex("```json\n") + len("```json\n")
    end = template.index("\n```", start)
    return template[:start] + ALL_ONES_EXAMPLE + template[end:]


def parsed(text: str, preset: str) -> Judgment | None:
    try:
        return parse_judgment(text, preset=preset)  # type: ignore[arg-type]
    except JudgmentParseError:
        return None


async def answers(client: ChatClient, prompts: list[str], max_tokens: int, schema: bool = False) -> list[str]:
    response_format = json_schema_format("judgment", JUDGMENT_SCHEMA) if schema else None
    messages = [[{"role": "user", "content": p}] for p in prompts]
    completions = await asyncio.gather(
        *(
            client.complete(m, max_tokens=max_tokens, temperature=0.5, top_p=0.8, response_format=response_format)
            for m in messages
        )
    )
    return [c.text for c in completions]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="LongBench-Write English items (shortest first)")
    parser.add_argument("--samples", type=int, default=1, help="judge replies per answer and prompt")
    parser.add_argument("--answer-max-tokens", type=int, default=256)
    parser.add_argument("--judge-max-tokens", type=int, default=250)
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    args = parser.parse_args()
    settings = args.settings.split(",")
    if unknown := set(settings) - set(SETTINGS):
        parser.error(f"unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")

    items = sorted(load_items("longbench_write_en"), key=lambda i: i.length)[: args.n]
    templates = {
        "paper": load_template(preset="paper"),
        "lw": load_template(preset="lw"),
        "former-lw": former_template(),
    }
    with Server(EMBEDDED_MODEL, startup_timeout=300) as server:
        client = server.client
        started = time.perf_counter()
        responses = await answers(client, [i.prompt for i in items], args.answer_max_tokens)
        print(f"{len(items)} answers in {time.perf_counter() - started:.0f} s (T 0.5, top_p 0.8)")
        print(f"judge: {EMBEDDED_MODEL} on llama.cpp, T 0.5, {args.judge_max_tokens} tokens, 1 try per reply")
        header = ("setting", "replies", "6 scores, paper reader", "6 scores, lw reader", "all 1s", "S_q", "s")
        widths = (-27, 7, 22, 22, 6, 5, 5)
        print(" ".join(f"{h:<{-w}}" if w < 0 else f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
        baseline = None  # the first setting read the paper's way
        for name in settings:
            prompt_name, schema = name.removesuffix("+schema"), name.endswith("+schema")
            template = templates[prompt_name]
            fill = judge_prompt if prompt_name == "paper" else (lambda p, r, t: _fill_once(t, p, r))
            prompts = [fill(i.prompt, r, template) for i, r in zip(items, responses, strict=True)] * args.samples
            started = time.perf_counter()
            replies = await answers(client, prompts, args.judge_max_tokens, schema)
            seconds = time.perf_counter() - started
            counts = [sum(parsed(t, reader) is not None for t in replies) for reader in ("paper", "lw")]
            baseline = counts[0] if baseline is None else baseline
            ok = [j for j in (parsed(t, "lw") for t in replies) if j is not None]
            ones = sum(set(j.scores.values()) == {1} for j in ok)
            s_q = f"{statistics.fmean(quality_score(j.scores) or 0.0 for j in ok):5.1f}" if ok else "–"
            cells = [
                f"{c:3d} ({c / len(replies):4.0%})" + (f" x{c / baseline:4.1f}" if baseline else "      ")
                for c in counts
            ]
            print(f"{name:27} {len(replies):7d} {cells[0]:>22} {cells[1]:>22} {ones:6d} {s_q:>5} {seconds:5.0f}")


if __name__ == "__main__":
    asyncio.run(main())
