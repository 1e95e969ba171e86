"""Blending long-writing chats with general SFT data, and train/validation splits."""

from __future__ import annotations

import polars as pl
from lw_core import stable_id

from lw_data.errors import DataError

MIX_COLUMNS = ("id", "messages", "source")


def mix(long: pl.DataFrame, general: pl.DataFrame, *, long_fraction: float, seed: int = 0) -> pl.DataFrame:
    """All of ``long`` plus as many ``general`` rows as make long-writing ``long_fraction`` of the result, shuffled.

    When ``general`` is too small for that fraction, all of it is used and ``long`` is subsampled instead, so the
    fraction always holds. Both inputs need ``messages``; the result has ``id``, ``messages`` and ``source``
    (``long``/``general``). The paper trains on LongWriter-6k plus 180k general chats: ``long_fraction≈0.03``.
    """
    if not 0 < long_fraction <= 1:
        raise DataError(f"long_fraction must be in (0, 1], got {long_fraction}")
    for name, frame in (("long", long), ("general", general)):
        if "messages" not in frame.columns:
            raise DataError(f"{name} data has no 'messages' column (columns: {', '.join(frame.columns)})")
    n_long = long.height
    n_general = round(n_long * (1 - long_fraction) / long_fraction)
    if n_general > general.height:
        n_general = general.height
        n_long = min(long.height, round(n_general * long_fraction / (1 - long_fraction))) if long_fraction < 1 else 0
    parts = [
        _as_mix(long, "long").sample(n_long, seed=seed),
        _as_mix(general, "general").sample(n_general, seed=seed + 1),
    ]
    return pl.concat(parts, how="vertical_relaxed").sample(fraction=1.0, shuffle=True, seed=seed)


def _as_mix(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    ids = pl.col("id") if "id" in frame.columns else pl.lit(None, dtype=pl.String)
    first_user = (
        pl.col("messages")
        .list.eval(pl.element().filter(pl.element().struct.field("role") == "user"))
        .list.first()
        .struct.field("content")
    )
    role, content = pl.element().struct.field("role"), pl.element().struct.field("content")
    out = frame.select(
        id=ids,
        messages=pl.col("messages").list.eval(pl.struct(role=role, content=content)),
        source=pl.lit(source),
        _user=first_user,
    )
    missing = out["id"].is_null()
    if missing.any():
        filled = out["_user"].fill_null("").map_elements(stable_id, return_dtype=pl.String)
        out = out.with_columns(id=pl.when(missing).then(filled).otherwise(pl.col("id")))
    return out.drop("_user")


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
