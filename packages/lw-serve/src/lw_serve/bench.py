"""Throughput of a served model at N concurrent streams, and of in-process ``generate`` as the baseline.

Every measurement uses the same prompts, greedy decoding and the same ``max_tokens``; tokens are
counted from the server's own ``usage`` (or the generated ids), so backends compare fairly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from lw_core import ChatClient

PROMPTS: tuple[str, ...] = (
    "Write a long essay about the history of the printing press.",
    "Write a detailed travel guide to the city of Kyoto.",
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a refrigerator works, step by step.",
    "Write a long letter to a friend describing your first year at university.",
    "Write a detailed report on the benefits and risks of nuclear power.",
    "Write a long blog post about learning to bake sourdough bread.",
    "Describe in detail the life cycle of a star, from nebula to remnant.",
)


@dataclass(frozen=True)
class Throughput:
    """One measurement: ``streams`` requests in flight at once, ``tokens`` generated in ``seconds``."""

    label: str
    streams: int
    tokens: int
    seconds: float

    @property
    def aggregate(self) -> float:
        """Generated tokens per second over all streams."""
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def per_stream(self) -> float:
        return self.aggregate / self.streams

    def as_dict(self) -> dict[str, object]:
        rates = {"aggregate_tok_s": round(self.aggregate, 2), "per_stream_tok_s": round(self.per_stream, 2)}
        return {**asdict(self), **rates}


def parse_streams(text: str) -> list[int]:
    """``"1,4,8"`` → ``[1, 4, 8]``; anything else is a :class:`ValueError` that says what was expected.

    >>> parse_streams("1, 4,8")
    [1, 4, 8]
    """
    counts = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"{text!r}: expected comma-separated stream counts of 1 or more, e.g. 1,4,8 ({part!r})")
        counts.append(int(part))
    return counts


_WARM_UP = [{"role": "user", "content": "Say hello."}]


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]


async def measure_client(client: ChatClient, label: str, streams: int, max_tokens: int) -> Throughput:
    """Send ``streams`` greedy requests at once and time them end to end, prompt processing included.

    The warm-up request uses a prompt outside the measured set, so no measured prompt is already
    in a server's prompt cache.
    """
    try:
        await client.complete(_WARM_UP, max_tokens=4, temperature=0.0)
        start = time.perf_counter()
        results = await asyncio.gather(
            *(client.complete(_messages(i), max_tokens=max_tokens, temperature=0.0) for i in range(streams))
        )
        seconds = time.perf_counter() - start
    finally:
        closer = getattr(client, "aclose", None)
        if closer is not None:
            await closer()
    return Throughput(label, streams, sum(r.usage.completion_tokens for r in results), seconds)


def measure_generate(folder: str, streams: Sequence[int], max_tokens: int, dtype: str = "float32") -> list[Throughput]:
    """Baseline: ``model.generate`` in this process, ``n`` prompts as one left-padded batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    model.eval()  # type: ignore[no-untyped-call]
    results = []
    with torch.inference_mode():
        for n in streams:
            texts = [
                tokenizer.apply_chat_template(_messages(i), tokenize=False, add_generation_prompt=True)
                for i in range(n)
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True)
            model.generate(**batch, max_new_tokens=4, do_sample=False)  # warm-up (no cache survives a call)
            start = time.perf_counter()
            out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False)
            seconds = time.perf_counter() - start
            new = out[:, batch["input_ids"].shape[1] :]
            tokens = int((new != tokenizer.pad_token_id).sum()) if tokenizer.pad_token_id is not None else new.numel()
            results.append(Throughput(f"generate {dtype}", n, tokens, seconds))
    return results
