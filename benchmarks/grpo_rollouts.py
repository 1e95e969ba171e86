"""GRPO rollouts on a CPU: completion tokens/s of llama.cpp serving the policy vs ``model.generate``, in one run.

The same prompts (lw-data's generated long-writing instructions, in the model's chat template), ``--generations``
completions each, sampled as a GRPO run samples them (temperature 1, no top-p/top-k, ``--max-tokens`` cap), for
``--steps`` rounds, each round what one optimizer step needs:

- ``model.generate``: TRL's own rollout path without vLLM — the whole batch left-padded into one ``generate`` call
  of the fp32 policy (nothing to sync: it is the policy);
- ``llama.cpp <outtype>``: lw-serve's ``PolicyServer`` as ``lw_train.train_grpo(rollout=...)`` uses it — every
  round saves the policy (``save_pretrained``), exports it to GGUF and restarts ``llama-server`` (the weight sync),
  then samples all completions over ``--slots`` parallel slots.

Completion tokens/s counts every generated token (up to and including an end of turn) over the rounds' whole time,
sync included; the ratio is each path's rate ÷ ``model.generate``'s. The issue's bar for shipping the llama.cpp
path is 3×. On a machine shared with other jobs wall time moves with their load, so each row also gives tokens per
CPU second: this process's CPU time (``time.process_time``: torch's threads, saving, exporting) plus, for llama.cpp,
the servers' (read from ``/proc``).

    python benchmarks/grpo_rollouts.py [--prompts 2] [--generations 4] [--max-tokens 256] [--steps 2] \
        [--threads 2] [--slots 8] [--outtypes f16,q8_0] [--out runs/bench/grpo_rollouts.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def _prompts(tokenizer: Any, count: int) -> list[list[int]]:
    from lw_data.generator import generate_instructions

    rows = generate_instructions(count, seed=7, kind="long", min_words=150, max_words=400, languages=["en"])
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for prompt in rows["prompt"].to_list()
    ]


def _generate_round(model: Any, tokenizer: Any, prompts: list[list[int]], args: argparse.Namespace) -> int:
    """One round the way TRL's GRPOTrainer generates without vLLM; returns the completion tokens."""
    import torch

    batch = [ids for ids in prompts for _ in range(args.generations)]
    width = max(map(len, batch))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
            max_new_tokens=args.max_tokens, pad_token_id=pad,
        )  # fmt: skip
    completions = out[:, width:].tolist()
    eos = tokenizer.eos_token_id
    return sum(row.index(eos) + 1 if eos in row else len(row) for row in completions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--outtypes", default="f16,q8_0")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/grpo_rollouts.json"))
    args = parser.parse_args()

    import torch
    from lw_serve import LlamaCppBackend
    from lw_serve.policy import PolicyServer
    from lw_train.models import resolve_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompts = _prompts(tokenizer, args.prompts)
    completions = len(prompts) * args.generations
    print(f"{args.model}: {len(prompts)} prompts × {args.generations} completions, ≤ {args.max_tokens} tokens, "
          f"{args.steps} rounds, {args.threads} threads", flush=True)  # fmt: skip
    _generate_round(model, tokenizer, prompts[:1], argparse.Namespace(generations=1, max_tokens=4))  # warm-up

    rows: list[dict[str, Any]] = []
    tokens, began, cpu = 0, time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        tokens += _generate_round(model, tokenizer, prompts, args)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    rows.append({"path": "model.generate", "tokens": tokens, "seconds": seconds, "sync_seconds": 0.0, "cpu_s": cpu})
    print(f"model.generate: {tokens} tokens in {seconds:.1f} s ({cpu:.1f} CPU s) = {tokens / seconds:.1f} tok/s",
          flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="lw-grpo-bench-") as scratch:
        policy_folder = Path(scratch) / "policy"
        for outtype in [t for t in args.outtypes.split(",") if t]:
            backend = LlamaCppBackend(threads=args.threads, parallel=args.slots, ctx_size=2048, metrics=False)
            with PolicyServer(backend, outtype=outtype, workdir=Path(scratch) / outtype) as server:
                tokens, sync, began, cpu = 0, 0.0, time.perf_counter(), time.process_time()
                for step in range(args.steps):
                    synced = time.perf_counter()
                    model.save_pretrained(policy_folder)  # what train_grpo does before each sync
                    tokenizer.save_pretrained(policy_folder)
                    server.sync(policy_folder)
                    sync += time.perf_counter() - synced
                    batch = [ids for ids in prompts for _ in range(args.generations)]
                    outputs = server.generate(batch, max_tokens=args.max_tokens, seed=step * completions)
                    tokens += sum(len(ids) + finished for ids, finished in outputs)  # the end of turn counts
                seconds = time.perf_counter() - began
                server.stop()  # counts the last server's CPU time
                cpu = time.process_time() - cpu + server.server_cpu_seconds
            row = {"path": f"llama.cpp {outtype}", "tokens": tokens, "seconds": seconds, "sync_seconds": sync}
            rows.append({**row, "cpu_s": cpu})
            print(f"llama.cpp {outtype}: {tokens} tokens in {seconds:.1f} s (sync {sync:.1f} s; {cpu:.1f} CPU s) = "
                  f"{tokens / seconds:.1f} tok/s", flush=True)  # fmt: skip

    base = rows[0]["tokens"] / rows[0]["seconds"]
    base_cpu = rows[0]["tokens"] / rows[0]["cpu_s"]
    print("\n| path | completion tokens | seconds (sync) | tokens/s | ÷ model.generate | CPU s | tokens/CPU s | ÷ |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rate, per_cpu = row["tokens"] / row["seconds"], row["tokens"] / row["cpu_s"]
        row |= {
            "tokens_per_s": round(rate, 2),
            "ratio": round(rate / base, 2),
            "ratio_cpu": round(per_cpu / base_cpu, 2),
        }
        print(f"| {row['path']} | {row['tokens']} | {row['seconds']:.1f} ({row['sync_seconds']:.1f}) | {rate:.1f} | "
              f"{rate / base:.2f}× | {row['cpu_s']:.1f} | {per_cpu:.1f} | {per_cpu / base_cpu:.2f}× |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"settings": settings, "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
