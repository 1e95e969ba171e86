"""Chat records -> ``input_ids`` + ``labels`` where only assistant turns (with their end-of-turn token) train.

Three prompt formats. ``template`` (ours, the default) works with any chat template: templates with
``{% generation %}`` blocks give the assistant mask directly; for the others, each assistant turn's character span
is found by rendering the conversation up to the turn (with the generation prompt) and up to its end, and tokens
starting inside a span are trained. ``llama-inst`` and ``glm4`` are the formats THUDM/LongWriter trained its
released models with, built token for token as its ``train/pre_tokenize_llama3.py`` and ``pre_tokenize_glm4.py``
build them; :data:`CHAT_TEMPLATES` renders the same formats as its inference code prompts them (``evaluation/
pred.py``), so a server prompts a model trained here as it was trained. Texts are tokenized in batches, and results
are cached on disk by tokenizer + data + format hash.
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
#: A concrete prompt format (``longwriter`` in a config resolves to one of the last two by model family).
Format = Literal["template", "llama-inst", "glm4"]

__all__ = [
    "CHAT_TEMPLATES",
    "Format",
    "Overlong",
    "TokenizationError",
    "TokenizedChats",
    "resolve_prompt_format",
    "tokenize_chats",
]

#: The released models' prompt formats as chat templates, as THUDM/LongWriter's inference code renders them:
#: ``evaluation/pred.py`` line 34 wraps a Llama prompt as ``[INST]{prompt}[/INST]`` and tokenizes it with the
#: tokenizer's BOS (the model card adds ``<<SYS>>\n{system}\n<</SYS>>\n\n`` and ``[INST]{q}[/INST]{a}`` per turn);
#: line 46 prompts GLM-4 through its ``chat()``, which builds ``[gMASK]<sop>`` + ``<|role|>\n{content}`` per
#: message + ``<|assistant|>`` (``train/patch/tokenization_chatglm.py`` lines 152-176).
CHAT_TEMPLATES: dict[str, str] = {
    "llama-inst": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'] + '\n<</SYS>>\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '[INST]' + message['content'] + '[/INST]' }}"
        "{% else %}{{ message['content'] }}{% endif %}{% endfor %}"
    ),
    "glm4": (
        "[gMASK]<sop>{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    ),
}
#: Model families (``config.json``'s ``model_type``) whose released LongWriter format ``longwriter`` picks.
_FAMILY_FORMATS = {"llama": "llama-inst", "chatglm": "glm4", "glm": "glm4", "glm4": "glm4"}
_GLM_ROLES = ("system", "user", "assistant", "observation")


def resolve_prompt_format(prompt_format: str, model_type: str | None) -> Format:
    """The concrete format: ``longwriter`` becomes the released code's format for the model's family.

    >>> resolve_prompt_format("longwriter", "llama"), resolve_prompt_format("longwriter", "chatglm")
    ('llama-inst', 'glm4')
    """
    if prompt_format in ("template", "llama-inst", "glm4"):
        return prompt_format  # type: ignore[return-value]
    if prompt_format != "longwriter":
        raise TokenizationError(
            f"unknown prompt format {prompt_format!r}: use template, llama-inst, glm4 or longwriter"
        )
    found = _FAMILY_FORMATS.get((model_type or "").lower())
    if found is None:
        raise TokenizationError(
            f"prompt format 'longwriter' is defined for Llama and GLM-4 models only (THUDM/LongWriter's "
            f"pre_tokenize_llama3.py / pre_tokenize_glm4.py), not model type {model_type!r}: choose template, "
            "llama-inst or glm4"
        )
    return found  # type: ignore[return-value]


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
    prompt_format: Format = "template",
) -> TokenizedChats:
    """Tokenize chats (``messages`` lists, dicts with ``messages``, or ``lw_core.SFTRecord``) for SFT.

    Over-long samples (more than ``max_tokens``) are, by policy: ``"drop"`` (default; counted in
    ``dropped_overlong`` and in :meth:`TokenizedChats.summary`), ``"truncate"`` (cut at ``max_tokens``; kept if an
    assistant token survives) or ``"error"``. Samples without any assistant token are dropped and counted.
    ``prompt_format`` is ``"template"`` (the tokenizer's chat template), ``"llama-inst"`` or ``"glm4"`` (the
    released LongWriter models' formats, built as THUDM/LongWriter's ``train/pre_tokenize_*.py`` build them).
    ``cache=True`` stores results under ``$LW_HOME/train/tokenized`` (a path picks another folder, ``False``
    disables it); the key covers the tokenizer (vocabulary, template), the data and these options.
    """
    if overlong not in ("drop", "truncate", "error"):
        raise TokenizationError(f"unknown over-long policy {overlong!r}: use 'drop', 'truncate' or 'error'")
    if max_tokens is not None and max_tokens < 1:
        raise TokenizationError(f"max_tokens must be >= 1, got {max_tokens}")
    if prompt_format not in ("template", "llama-inst", "glm4"):
        raise TokenizationError(
            f"unknown prompt format {prompt_format!r}: use template, llama-inst or glm4 (resolve 'longwriter' "
            "with resolve_prompt_format first)"
        )
    conversations = [_messages(record, index) for index, record in enumerate(records)]
    cache_file = None
    if cache:
        folder = Path(cache) if not isinstance(cache, bool) else cache_dir("train", "tokenized")
        key = _cache_key(conversations, tokenizer, max_tokens, f"{overlong}\0{prompt_format}")
        cache_file = folder / f"{key}.npz"
        if cache_file.exists():
            return TokenizedChats._from_file(cache_file)
    result = _tokenize(conversations, tokenizer, max_tokens, overlong, batch_size, prompt_format)
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


def _template_pairs(tokenizer: Any, batch: list[list[dict[str, str]]], batch_start: int) -> list[_Pair]:
    """``(input_ids, labels)`` through the tokenizer's chat template."""
    if tokenizer.chat_template is None:
        raise TokenizationError(f"tokenizer {tokenizer.name_or_path!r} has no chat template; set one first")
    if _GENERATION_BLOCK.search(str(tokenizer.chat_template)):
        encoded = tokenizer.apply_chat_template(
            batch, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        masks = zip(encoded["input_ids"], encoded["assistant_masks"], strict=True)
        return [_labelled(np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=bool)) for ids, mask in masks]
    rendered = [_assistant_spans(tokenizer, m, batch_start + i) for i, m in enumerate(batch)]
    encoded = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
    pairs = []
    for ids, offsets, (_, spans) in zip(encoded["input_ids"], encoded["offset_mapping"], rendered, strict=True):
        starts = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
        trained = np.zeros(len(starts), dtype=bool)
        for begin, end in spans:
            trained |= (starts >= begin) & (starts < end)
        pairs.append(_labelled(np.asarray(ids, dtype=np.int32), trained))
    return pairs


def _labelled(ids: np.ndarray, trained: np.ndarray) -> _Pair:
    return ids, np.where(trained, ids, IGNORE_INDEX).astype(np.int32)


def _llama_inst_pairs(tokenizer: Any, batch: list[list[dict[str, str]]], batch_start: int) -> list[_Pair]:
    """THUDM/LongWriter ``train/pre_tokenize_llama3.py`` ``build_input`` (lines 38-58), token for token.

    BOS, then every message tokenized on its own with the tokenizer's own special tokens (a Llama-3 tokenizer adds
    a BOS to each): a system message as ``<<SYS>>\n{content}\n<</SYS>>\n\n``, a user message as
    ``[INST]{content}[/INST]``, an answer as its text; then EOS. An answer's tokens train, and the position right
    after it is labelled EOS (line 58) even where a next message's token stands there.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise TokenizationError(
            f"tokenizer {tokenizer.name_or_path!r} has no BOS or EOS token, which the llama-inst format needs"
        )
    pieces, layout = [], []
    for offset, messages in enumerate(batch):
        for turn, message in enumerate(messages):
            role, content = message["role"], message["content"]
            if role == "system":
                pieces.append(f"<<SYS>>\n{content}\n<</SYS>>\n\n")
            elif role == "user":
                pieces.append(f"[INST]{content}[/INST]")
            elif role == "assistant":
                pieces.append(content)
            else:
                raise TokenizationError(
                    f"record {batch_start + offset}: message {turn} has role {role!r}; the llama-inst format knows "
                    "system, user and assistant"
                )
            layout.append(role == "assistant")
    encoded = iter(tokenizer(pieces)["input_ids"]) if pieces else iter(())
    answers = iter(layout)
    pairs = []
    for messages in batch:
        ids, spans = [bos], []
        for _ in messages:
            piece = next(encoded)
            if next(answers):
                spans.append((len(ids), len(ids) + len(piece)))
            ids.extend(piece)
        ids.append(eos)
        labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
        for start, end in spans:
            labels[start:end] = ids[start:end]
            labels[end] = eos
        pairs.append((np.asarray(ids, dtype=np.int32), labels))
    return pairs


def _glm4_pairs(tokenizer: Any, batch: list[list[dict[str, str]]], batch_start: int) -> list[_Pair]:
    """THUDM/LongWriter ``train/pre_tokenize_glm4.py`` ``build_input`` (lines 37-53), token for token.

    ``[gMASK]<sop>``, then per message ``<|role|>`` + ``"\n"`` + the text (``build_single_message`` of the patched
    ``tokenization_chatglm.py``, lines 156-161; special-token text inside a message stays text), then
    ``<|endoftext|>``. A non-empty answer trains from its ``"\n"`` through the token after it (the next role token
    or ``<|endoftext|>``): the original's ``labels[start+3:end+3]``.
    """
    gmask, sop, end_of_text = (_special_id(tokenizer, t) for t in ("[gMASK]", "<sop>", "<|endoftext|>"))
    role_ids = {role: _special_id(tokenizer, f"<|{role}|>") for role in _GLM_ROLES}
    newline = list(tokenizer("\n", add_special_tokens=False)["input_ids"])
    pairs = []
    for offset, messages in enumerate(batch):
        for turn, message in enumerate(messages):
            if message["role"] not in role_ids:
                raise TokenizationError(
                    f"record {batch_start + offset}: message {turn} has role {message['role']!r}; the glm4 format "
                    f"knows {', '.join(_GLM_ROLES)}"
                )
        texts = [m["content"] for m in messages]
        contents = tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids, spans = [gmask, sop], []
        for message, content in zip(messages, contents, strict=True):
            start = len(ids)
            ids += [role_ids[message["role"]], *newline, *content]
            if message["role"] == "assistant" and message["content"] != "":
                spans.append((start + 1, len(ids) + 1))
        ids.append(end_of_text)
        labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
        for start, end in spans:
            labels[start:end] = ids[start:end]
        pairs.append((np.asarray(ids, dtype=np.int32), labels))
    return pairs


def _special_id(tokenizer: Any, token: str) -> int:
    """The id of a special token: GLM-4's own tokenizer through ``get_command``, any other through its vocabulary."""
    command = getattr(tokenizer, "get_command", None)
    if callable(command):
        return int(command(token))
    found = tokenizer.get_vocab().get(token)
    if found is None:
        raise TokenizationError(
            f"tokenizer {tokenizer.name_or_path!r} has no {token} token: the glm4 format needs a GLM-4 tokenizer"
        )
    return int(found)


_Pair = tuple[np.ndarray, np.ndarray]
_BUILDERS = {"template": _template_pairs, "llama-inst": _llama_inst_pairs, "glm4": _glm4_pairs}


def _tokenize(
    conversations: list[list[dict[str, str]]],
    tokenizer: Any,
    max_tokens: int | None,
    overlong: str,
    batch_size: int,
    prompt_format: str = "template",
) -> TokenizedChats:
    build = _BUILDERS[prompt_format]
    ids_out: list[np.ndarray] = []
    labels_out: list[np.ndarray] = []
    source: list[int] = []
    dropped_overlong: list[int] = []
    dropped_untrained: list[int] = []
    truncated: list[int] = []
    for batch_start in range(0, len(conversations), batch_size):
        batch = conversations[batch_start : batch_start + batch_size]
        for offset, (ids, labels) in enumerate(build(tokenizer, batch, batch_start)):
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
                ids, labels = ids[:max_tokens], labels[:max_tokens]
                truncated.append(index)
            if not (labels != IGNORE_INDEX).any():
                dropped_untrained.append(index)
                continue
            ids_out.append(ids)
            labels_out.append(labels)
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
