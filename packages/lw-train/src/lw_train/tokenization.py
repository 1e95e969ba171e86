"""Chat records -> ``input_ids`` + ``labels`` where only assistant turns (with their end-of-turn token) train.

Works with any chat template: templates with ``{% generation %}`` blocks give the assistant mask directly;
for the others, each assistant turn's character span is found by rendering the conversation up to the turn
(with the generation prompt) and up to its end, and tokens starting inside a span are trained. Texts are
tokenized in batches by the fast (Rust) tokenizer, and results are cached on disk by tokenizer + data hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lw_core import cache_dir
from lw_core.jsonl import atomic_write

from .collators import IGNORE_INDEX
from .errors import TokenizationError

Overlong = Literal["drop", "truncate", "error"]

__all__ = ["Overlong", "TokenizationError", "TokenizedChats", "tokenize_chats"]

_FORMAT_VERSION = "1"
_GENERATION_BLOCK = re.compile(r"{%-?\s*generation\s*-?%}")
# Zero-width characters leak into generated text and teach the model to emit invisible tokens.
_ZERO_WIDTH = str.maketrans("", "", "\u200b\u200c\u200d\u2060\ufeff")


@dataclass(eq=False)
class TokenizedChats(Sequence[dict[str, np.ndarray]]):
    """Tokenized samples stored flat (two int32 arrays + offsets): compact, cacheable, fast to index.

    ``sample[i]`` is ``{"input_ids", "labels"}`` ready for the collators; ``source[i]`` is the index of the input
    record it came from; ``dropped_overlong``/``dropped_untrained`` list input indices that were left out.
    """

    tokens: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    source: np.ndarray
    dropped_overlong: list[int] = field(default_factory=list)
    dropped_untrained: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        start, end = self.offsets[index], self.offsets[index + 1]
        return {"input_ids": self.tokens[start:end], "labels": self.labels[start:end]}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> list[int]:
        """Tokens per sample, the input of :func:`lw_train.pack`."""
        lengths: list[int] = np.diff(self.offsets).tolist()
        return lengths

    def summary(self) -> str:
        trained = int((self.labels != IGNORE_INDEX).sum())
        parts = [f"{len(self)} samples, {len(self.tokens)} tokens ({trained} trained)"]
        if self.dropped_overlong:
            parts.append(f"{len(self.dropped_overlong)} dropped as over-long")
        if self.truncated:
            parts.append(f"{len(self.truncated)} truncated")
        if self.dropped_untrained:
            parts.append(f"{len(self.dropped_untrained)} dropped with no assistant tokens")
        return ", ".join(parts)

    def _to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            tokens=self.tokens,
            labels=self.labels,
            offsets=self.offsets,
            source=self.source,
            dropped_overlong=np.asarray(self.dropped_overlong, dtype=np.int64),
            dropped_untrained=np.asarray(self.dropped_untrained, dtype=np.int64),
            truncated=np.asarray(self.truncated, dtype=np.int64),
        )
        return buffer.getvalue()

    @classmethod
    def _from_file(cls, path: Path) -> TokenizedChats:
        with np.load(path) as data:
            return cls(
                data["tokens"],
                data["labels"],
                data["offsets"],
                data["source"],
                data["dropped_overlong"].tolist(),
                data["dropped_untrained"].tolist(),
                data["truncated"].tolist(),
            )


def tokenize_chats(
    records: Iterable[Any],
    tokenizer: Any,
    *,
    max_tokens: int | None = None,
    overlong: Overlong = "drop",
    cache: bool | str | Path = True,
    batch_size: int = 512,
) -> TokenizedChats:
    """Tokenize chats (``messages`` lists, dicts with ``messages``, or ``lw_core.SFTRecord``) for SFT.

    Over-long samples (more than ``max_tokens``) are, by policy: ``"drop"`` (default; counted in
    ``dropped_overlong`` and in :meth:`TokenizedChats.summary`), ``"truncate"`` (cut at ``max_tokens``; kept if an
    assistant token survives) or ``"error"``. Samples without any assistant token are dropped and counted.
    ``cache=True`` stores results under ``$LW_HOME/train/tokenized`` (a path picks another folder, ``False``
    disables it); the key covers the tokenizer (vocabulary, template), the data and these options.
    """
    if overlong not in ("drop", "truncate", "error"):
        raise TokenizationError(f"unknown over-long policy {overlong!r}: use 'drop', 'truncate' or 'error'")
    if max_tokens is not None and max_tokens < 1:
        raise TokenizationError(f"max_tokens must be >= 1, got {max_tokens}")
    conversations = [_messages(record, index) for index, record in enumerate(records)]
    cache_file = None
    if cache:
        folder = Path(cache) if not isinstance(cache, bool) else cache_dir("train", "tokenized")
        cache_file = folder / f"{_cache_key(conversations, tokenizer, max_tokens, overlong)}.npz"
        if cache_file.exists():
            return TokenizedChats._from_file(cache_file)
    result = _tokenize(conversations, tokenizer, max_tokens, overlong, batch_size)
    if cache_file is not None:
        atomic_write(cache_file, result._to_bytes())
    return result


def _messages(record: Any, index: int) -> list[dict[str, str]]:
    messages = getattr(record, "messages", None)
    if messages is None:
        messages = record.get("messages") if isinstance(record, Mapping) else record
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise TokenizationError(f"record {index}: expected a non-empty list of chat messages, got {type(messages)}")
    normalized = []
    for turn, message in enumerate(messages):
        role = getattr(message, "role", None) or (message.get("role") if isinstance(message, Mapping) else None)
        content = getattr(message, "content", None)
        if content is None and isinstance(message, Mapping):
            content = message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise TokenizationError(f"record {index}: message {turn} needs string 'role' and 'content'")
        if role == "assistant":
            content = content.translate(_ZERO_WIDTH)
        normalized.append({"role": role, "content": content})
    return normalized


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    template = (
        tokenizer.chat_template
        if isinstance(tokenizer.chat_template, str)
        else json.dumps(tokenizer.chat_template, sort_keys=True)
    )
    return hashlib.sha256(f"{type(tokenizer).__name__}\0{vocabulary}\0{template}".encode()).hexdigest()


def _cache_key(conversations: list[list[dict[str, str]]], tokenizer: Any, max_tokens: int | None, overlong: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"{_FORMAT_VERSION}\0{_tokenizer_fingerprint(tokenizer)}\0{max_tokens}\0{overlong}\0".encode())
    for messages in conversations:
        digest.update(json.dumps(messages, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return text


def _assistant_spans(tokenizer: Any, messages: list[dict[str, str]], index: int) -> tuple[str, list[tuple[int, int]]]:
    """The full text and the character span of each assistant turn (content + end-of-turn token)."""
    full = _render(tokenizer, messages, False)
    spans = []
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:turn], True) if turn else ""
        through = _render(tokenizer, messages[: turn + 1], False).rstrip()
        if not (through.startswith(before) and full.startswith(through)):
            raise TokenizationError(
                f"record {index}: the chat template renders turn {turn} differently depending on what follows, so "
                "assistant tokens cannot be located; use a template with {% generation %} blocks"
            )
        spans.append((len(before), len(through)))
    return full, spans


def _tokenize(
    conversations: list[list[dict[str, str]]],
    tokenizer: Any,
    max_tokens: int | None,
    overlong: str,
    batch_size: int,
) -> TokenizedChats:
    has_generation_blocks = bool(_GENERATION_BLOCK.search(str(tokenizer.chat_template or "")))
    if tokenizer.chat_template is None:
        raise TokenizationError(f"tokenizer {tokenizer.name_or_path!r} has no chat template; set one first")
    ids_out: list[np.ndarray] = []
    labels_out: list[np.ndarray] = []
    source: list[int] = []
    dropped_overlong: list[int] = []
    dropped_untrained: list[int] = []
    truncated: list[int] = []
    for batch_start in range(0, len(conversations), batch_size):
        batch = conversations[batch_start : batch_start + batch_size]
        if has_generation_blocks:
            encoded = tokenizer.apply_chat_template(
                batch, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            pairs = [
                (np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=bool))
                for ids, mask in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True)
            ]
        else:
            rendered = [_assistant_spans(tokenizer, m, batch_start + i) for i, m in enumerate(batch)]
            encoded = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
            pairs = []
            for ids, offsets, (_, spans) in zip(encoded["input_ids"], encoded["offset_mapping"], rendered, strict=True):
                starts = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
                trained = np.zeros(len(starts), dtype=bool)
                for begin, end in spans:
                    trained |= (starts >= begin) & (starts < end)
                pairs.append((np.asarray(ids, dtype=np.int32), trained))
        for offset, (ids, trained) in enumerate(pairs):
            index = batch_start + offset
            if max_tokens is not None and len(ids) > max_tokens:
                if overlong == "error":
                    raise TokenizationError(
                        f"record {index} has {len(ids)} tokens, more than max_tokens={max_tokens}; "
                        "use overlong='drop' or 'truncate', or raise max_tokens"
                    )
                if overlong == "drop":
                    dropped_overlong.append(index)
                    continue
                ids, trained = ids[:max_tokens], trained[:max_tokens]
                truncated.append(index)
            if not trained.any():
                dropped_untrained.append(index)
                continue
            ids_out.append(ids)
            labels_out.append(np.where(trained, ids, IGNORE_INDEX).astype(np.int32))
            source.append(index)
    lengths = np.fromiter((len(ids) for ids in ids_out), dtype=np.int64, count=len(ids_out))
    return TokenizedChats(
        tokens=np.concatenate(ids_out) if ids_out else np.zeros(0, dtype=np.int32),
        labels=np.concatenate(labels_out) if labels_out else np.zeros(0, dtype=np.int32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        source=np.asarray(source, dtype=np.int64),
        dropped_overlong=dropped_overlong,
        dropped_untrained=dropped_untrained,
        truncated=sorted(set(truncated) - set(dropped_untrained)),
    )
