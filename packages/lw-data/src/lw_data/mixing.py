"""Blending long-writing data with general data (SFT chats or preference pairs), and train/validation splits."""

from __future__ import annotations

import polars as pl
from lw_core import stable_id

from lw_data.errors import DataError

_PAIR_COLUMNS = ("chosen", "rejected")


def mix(long: pl.DataFrame, general: pl.DataFrame, *, long_fraction: float, seed: int = 0) -> pl.DataFrame:
    """All of ``long`` plus as many ``general`` rows as make long-writing ``long_fraction`` of the result, shuffled.

    Works on SFT chats (both inputs have ``messages``; the result has ``id``, ``messages``, ``source``) and on
    preference pairs (both have ``chosen`` and ``rejected``; the result has ``id``, ``prompt``, ``chosen``,
    ``rejected``, ``source``, in lw-core's ``PreferencePair`` form). General pairs may be TRL's explicit-prompt
    conversational rows (like ours), plain strings (``prompt``/``chosen``/``rejected`` text), or full
    conversations (``chosen`` and ``rejected`` end with the answer, the turns before it are the prompt).
    ``source`` is ``long`` or ``general``; ``meta`` is not carried over.

    When ``general`` is too small for the fraction, all of it is used and ``long`` is subsampled instead, so the
    fraction always holds. The paper trains on LongWriter-6k plus 180k general chats (``long_fraction≈0.03``),
    and its DPO stage mixes its long-writing pairs into general preference data the same way.

    >>> long = pl.DataFrame({"prompt": ["Write 900 words"], "chosen": ["good"], "rejected": ["bad"]})
    >>> general = pl.DataFrame({"prompt": [f"q{i}" for i in range(9)], "chosen": ["a"] * 9, "rejected": ["b"] * 9})
    >>> mixed = mix(long, general, long_fraction=0.25, seed=0)
    >>> mixed.height, mixed["source"].value_counts(sort=True).rows()
    (4, [('general', 3), ('long', 1)])
    """
    if not 0 < long_fraction <= 1:
        raise DataError(f"long_fraction must be in (0, 1], got {long_fraction}")
    kinds = {name: _kind(frame) for name, frame in (("long", long), ("general", general))}
    for name, frame in (("long", long), ("general", general)):
        if kinds[name] is None:
            raise DataError(
                f"{name} data has no 'messages' column (SFT chats) nor 'chosen'/'rejected' columns (preference "
                f"pairs) (columns: {', '.join(frame.columns)})"
            )
    if kinds["long"] != kinds["general"]:
        raise DataError(f"long data holds {kinds['long']} but general data {kinds['general']}: mix one kind")
    pairs = kinds["long"] == "preference pairs"
    n_long = long.height
    n_general = round(n_long * (1 - long_fraction) / long_fraction)
    if n_general > general.height:
        n_general = general.height
        n_long = min(long.height, round(n_general * long_fraction / (1 - long_fraction))) if long_fraction < 1 else 0
    normalise = _as_pairs if pairs else _as_chats
    parts = [
        normalise(long, "long").sample(n_long, seed=seed),
        normalise(general, "general").sample(n_general, seed=seed + 1),
    ]
    return pl.concat(parts, how="vertical_relaxed").sample(fraction=1.0, shuffle=True, seed=seed)


def _kind(frame: pl.DataFrame) -> str | None:
    if set(_PAIR_COLUMNS) <= set(frame.columns):
        return "preference pairs"
    return "SFT chats" if "messages" in frame.columns else None


def _messages(column: str) -> pl.Expr:
    """A list of ``{role, content}`` messages, whatever else the input's message structs hold."""
    role, content = pl.element().struct.field("role"), pl.element().struct.field("content")
    return pl.col(column).list.eval(pl.struct(role=role, content=content))


def _with_ids(out: pl.DataFrame) -> pl.DataFrame:
    """Fill missing ids from the first user turn (``_user``), as lw-core records do."""
    missing = out["id"].is_null()
    if missing.any():
        filled = out["_user"].fill_null("").map_elements(stable_id, return_dtype=pl.String)
        out = out.with_columns(id=pl.when(missing).then(filled).otherwise(pl.col("id")))
    return out.drop("_user")


def _first_user(messages: pl.Expr) -> pl.Expr:
    user = pl.element().struct.field("role") == "user"
    return messages.list.eval(pl.element().filter(user)).list.first().struct.field("content")


def _ids(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("id").cast(pl.String) if "id" in frame.columns else pl.lit(None, dtype=pl.String)


def _as_chats(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    out = frame.select(
        id=_ids(frame), messages=_messages("messages"), source=pl.lit(source), _user=_first_user(pl.col("messages"))
    )
    return _with_ids(out)


def _as_pairs(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Preference pairs in lw-core's form: ``prompt`` messages, one answer message each in chosen and rejected."""
    answers: dict[str, pl.Expr] = {}
    turns_before: pl.Expr | None = None
    for column in _PAIR_COLUMNS:
        dtype = frame.schema[column]
        if dtype == pl.String:
            answers[column] = pl.concat_list(pl.struct(role=pl.lit("assistant"), content=pl.col(column)))
        elif isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
            answers[column] = _messages(column).list.tail(1)
            if column == "chosen":  # a whole conversation: the turns before the answer are the prompt
                turns_before = _messages(column).list.head(pl.col(column).list.len() - 1)
        else:
            raise DataError(f"{source} pairs: '{column}' must be text or a list of messages, not {dtype}")
    given = _given_prompt(frame, source)
    if given is None and turns_before is None:
        raise DataError(f"{source} pairs: no 'prompt' column and 'chosen' holds no conversation to take it from")
    if turns_before is None:
        prompt = given
    else:
        is_conversation = pl.col("chosen").list.len() > 1
        prompt = pl.when(is_conversation).then(turns_before).otherwise(given)
    out = frame.select(id=_ids(frame), prompt=prompt, **answers, source=pl.lit(source))
    out = out.with_columns(_user=_first_user(pl.col("prompt")))
    if out["prompt"].null_count() or (out["prompt"].list.len() == 0).any():
        raise DataError(f"{source} pairs: a row has no prompt (neither a 'prompt' value nor turns before the answer)")
    return _with_ids(out)


def _given_prompt(frame: pl.DataFrame, source: str) -> pl.Expr | None:
    if "prompt" not in frame.columns:
        return None
    dtype = frame.schema["prompt"]
    if dtype == pl.String:
        return pl.concat_list(pl.struct(role=pl.lit("user"), content=pl.col("prompt")))
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        return _messages("prompt")
    raise DataError(f"{source} pairs: 'prompt' must be text or a list of messages, not {dtype}")


def split(frame: pl.DataFrame, *, val_fraction: float, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Shuffle with ``seed`` and hold out ``val_fraction`` of the prompts (at least one when > 0) as validation.

    Rows sharing an ``id`` (the same prompt) land on the same side, so validation never sees a training prompt.
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = frame.select(pl.col("id").unique(maintain_order=True)).to_series().shuffle(seed=seed)
    n_val = max(1, round(ids.len() * val_fraction)) if val_fraction > 0 and ids.len() > 1 else 0
    held_out = pl.col("id").is_in(ids.head(n_val).implode())
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    return shuffled.filter(~held_out), shuffled.filter(held_out)
