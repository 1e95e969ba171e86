"""`lw-train sft` trained tokens/s vs TRL's SFTTrainer (padded batches) and vs the bare packed loop, on a CPU.

Same chats, model (SmolLM2-135M-Instruct dequantized from the embedded GGUF), threads, learning rate and one epoch
in one process; each run starts from freshly loaded weights. Three ways to train them:

- ``trl padded``: TRL ``SFTTrainer`` in its CPU-correct setting: prompt-completion chats (loss on the answer only),
  ``--batch-size`` samples per padded batch, no packing (its packing needs FlashAttention to stay cheap), fp32,
  no gradient checkpointing;
- ``lw-train sft``: :func:`lw_train.train_sft` (transformers' Trainer with best-fit bins of ``--bin-tokens``,
  PackedCollator, segment attention, sequence loss) as ``lw-train sft`` runs it;
- ``bare packed loop``: the same bins through part 1's hand loop (``model_loss`` + AdamW, nothing else): the
  trainer's overhead is the gap to this one.

Trained tokens/s = answer tokens trained / seconds inside ``train()`` (tokenizing and model loading excluded),
per wall-clock second and per CPU second of this process (``time.process_time``: less sensitive to other jobs
sharing the cores; both are printed).
Lengths are LongWriter-like, scaled down for a CPU: mostly 50-600-token answers, ~8 % of --long-max/2 to
--long-max tokens.

    python benchmarks/train_sft.py [--samples 24] [--batch-size 4] [--bin-tokens 2048] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import train as bare_loop  # part 1's hand loop

WORDS = (
    "the", "river", "city", "long", "night", "writer", "careful", "story", "of", "light", "and", "water",
    "history", "empire", "garden", "north", "quiet", "market", "bridge", "winter", "letters", "during", "across",
    "people", "summer", "old", "new", "because", "while",
)  # fmt: skip


def chats(count: int, long_max: int, seed: int = 0) -> list[dict[str, list[dict[str, str]]]]:
    rng = random.Random(seed)
    records = []
    for index in range(count):
        words = (
            rng.randint(long_max // 2, long_max)
            if rng.random() < 0.08
            else int(min(600, max(50, rng.lognormvariate(5.3, 0.6))))
        )
        answer = " ".join(rng.choice(WORDS) for _ in range(int(words * 0.8)))  # ~1.25 tokens per word
        prompt = f"Write a piece of about {words} words on topic {index}."
        records.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
    return records


class CpuClock(TrainerCallback):
    """CPU seconds of this process between the start and the end of ``Trainer.train``."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.seconds = -time.process_time()

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.seconds += time.process_time()


def run_lw_train(folder: Path, data: Path, args: argparse.Namespace, work: Path) -> tuple[int, float, float]:
    from lw_train import SFTConfig, train_sft

    config = SFTConfig.validated({
        "model": str(folder), "data": str(data), "output_dir": str(work), "epochs": 1,
        "max_tokens": args.bin_tokens, "learning_rate": 1e-5, "warmup_ratio": 0.0, "save_steps": 10**6,
        "attention": "segments", "dtype": "float32", "threads": args.threads, "loss_reduction": "sequence",
    })  # fmt: skip
    clock = CpuClock()
    summary = train_sft(config, callbacks=[clock], progress=False).summary
    return summary["trained_tokens"], summary["train_seconds"], clock.seconds


def run_bare_loop(folder: Path, records: list, args: argparse.Namespace) -> tuple[int, float, float]:
    from lw_train import PackedCollator, count_targets, pack, tokenize_chats, use_segment_attention
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    samples = tokenize_chats(records, tokenizer, max_tokens=args.bin_tokens, cache=False)
    bins = pack(samples.lengths, args.bin_tokens)
    collate = PackedCollator(pad_token_id=tokenizer.pad_token_id or 0, pad_to_multiple_of=64)
    batches = [collate([samples[i] for i in b]) for b in bins]
    print(f"packed: {sum(b['input_ids'].numel() for b in batches)} positions in {len(batches)} bins")
    model = use_segment_attention(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)).train()
    cpu = -time.process_time()
    seconds = bare_loop(model, batches)
    return sum(count_targets(b).tokens for b in batches), seconds, cpu + time.process_time()


def run_trl_padded(folder: Path, records: list, args: argparse.Namespace, work: Path) -> tuple[int, float, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    rows = [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in records]
    config = TRLConfig(
        output_dir=str(work / "trl"), num_train_epochs=1, per_device_train_batch_size=args.batch_size,
        learning_rate=1e-5, max_length=args.bin_tokens, packing=False, padding_free=False, bf16=False,
        activation_checkpointing=False, save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True,
        use_cpu=True, seed=0,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    clock = CpuClock()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(folder),
        callbacks=[clock],
    )
    batches = list(trainer.get_train_dataloader())
    trained = sum(int((batch["labels"][:, 1:] != -100).sum()) for batch in batches)
    print(f"trl padded: {sum(b['input_ids'].numel() for b in batches)} positions in {len(batches)} batches")
    start = time.perf_counter()
    trainer.train()
    return trained, time.perf_counter() - start, clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4, help="TRL's padded batch size")
    parser.add_argument("--bin-tokens", type=int, default=2048)
    parser.add_argument("--long-max", type=int, default=1500, help="longest answer in words")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of lw-train and the bare loop (best is kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from train_throughput import smollm2_folder

    folder = smollm2_folder()
    records = chats(args.samples, args.long_max)
    print(f"{args.samples} chats, threads={args.threads}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "sft.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.environ.setdefault("LW_HOME", str(work / "lw_home"))
        runs: dict[str, list[tuple[int, float, float]]] = {"trl padded": [], "lw-train sft": [], "bare packed loop": []}
        runs["trl padded"].append(run_trl_padded(folder, records, args, work))
        for repeat in range(args.repeats):  # alternated, so neither always runs on a warmer process
            runs["bare packed loop"].append(run_bare_loop(folder, records, args))
            runs["lw-train sft"].append(run_lw_train(folder, data, args, work / f"run{repeat}"))
    for name, measured in runs.items():
        print(
            f"{name}: "
            + ", ".join(f"{tokens / wall:.1f} tok/s ({tokens / cpu:.1f}/CPU s)" for tokens, wall, cpu in measured)
        )
    results = {name: min(measured, key=lambda run: run[1]) for name, measured in runs.items()}  # best of the repeats
    print(f"{'method':<18}{'trained tokens':>16}{'seconds':>9}{'tokens/s':>10}{'CPU s':>9}{'tokens/CPU s':>14}")
    rates, cpu_rates = {}, {}
    for name, (tokens, seconds, cpu) in results.items():
        rates[name], cpu_rates[name] = tokens / seconds, tokens / cpu
        print(f"{name:<18}{tokens:>16}{seconds:>9.1f}{rates[name]:>10.1f}{cpu:>9.1f}{cpu_rates[name]:>14.1f}")
    for baseline, goal in [("trl padded", ">= 2"), ("bare packed loop", ">= 0.9")]:
        wall, cpu = rates["lw-train sft"] / rates[baseline], cpu_rates["lw-train sft"] / cpu_rates[baseline]
        print(f"lw-train sft / {baseline}: {wall:.2f}x wall, {cpu:.2f}x CPU (goal {goal})")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
