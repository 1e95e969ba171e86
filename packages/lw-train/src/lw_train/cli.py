"""The `lw-train` command line: packed SFT and DPO from a config file, and bin planning for an SFT file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="lw-train",
    no_args_is_help=True,
    help="lw-train: packed SFT and DPO for long-output models (configs in recipes/), and bin planning.",
)
console = Console(stderr=True, soft_wrap=True)


@app.callback()
def main() -> None:
    """lw-train commands."""


@app.command()
def pack(
    data: Annotated[Path, typer.Argument(help="SFT file (JSONL of lw SFTRecord / {'messages': [...]})")],
    tokenizer: Annotated[str, typer.Option(help="Hugging Face tokenizer: a local folder or hub name")],
    max_tokens: Annotated[int, typer.Option(help="bin capacity in tokens (the training row length)")] = 32_768,
    strategy: Annotated[str, typer.Option(help="bfd (best fit), nextfit (the original), sorted-nextfit, none")] = "bfd",
    overlong: Annotated[str, typer.Option(help="samples over --max-tokens: drop, truncate or error")] = "drop",
    num_ranks: Annotated[int, typer.Option(help="data-parallel ranks that must get equal step counts")] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the bins (JSON) here")] = None,
) -> None:
    """Tokenize (cached under $LW_HOME), pack into bins and report fill; optionally save the bins."""
    from lw_core import LWError
    from lw_core.jsonl import atomic_write, read_jsonl
    from lw_core.schemas import SFTRecord

    try:
        from transformers import AutoTokenizer

        from lw_train import pack as pack_bins
        from lw_train import pack_fill, tokenize_chats

        with console.status("reading and tokenizing"):
            records = list(read_jsonl(data, SFTRecord))
            try:
                loaded = AutoTokenizer.from_pretrained(tokenizer)
            except OSError as error:
                raise LWError(f"cannot load tokenizer {tokenizer!r}: {error}") from None
            samples = tokenize_chats(records, loaded, max_tokens=max_tokens, overlong=overlong)  # type: ignore[arg-type]
        lengths = samples.lengths
        bins = pack_bins(lengths, max_tokens, strategy, num_ranks=num_ranks)  # type: ignore[arg-type]
    except (LWError, FileNotFoundError) as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(samples.summary())
    console.print(
        f"{len(bins)} bins of {max_tokens} tokens ({strategy}), fill {pack_fill(bins, lengths, max_tokens):.2%}"
    )
    if output is not None:
        source = samples.source.tolist()
        payload = {"max_tokens": max_tokens, "strategy": strategy, "bins": [[source[i] for i in b] for b in bins]}
        atomic_write(output, json.dumps(payload) + "\n")
        console.print(f"bins (as line indices of {data}): {output}")


ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="config file (.toml, .yaml or .json); see recipes/")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="override a config key: --set max_steps=2 (repeatable; lora.r=8)")
]
ResumeOption = Annotated[bool, typer.Option("--resume", help="continue from the last finished checkpoint")]


@app.command()
def sft(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False) -> None:
    """Packed SFT on lw SFT records: the final model is written to output_dir, with summary.json and log.jsonl."""
    _train("sft", config, set_ or [], resume)


@app.command()
def dpo(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False) -> None:
    """DPO (TRL's DPOTrainer) on lw preference pairs; the final model is written to output_dir."""
    _train("dpo", config, set_ or [], resume)


def _train(kind: str, path: Path, overrides: list[str], resume: bool) -> None:
    from lw_core import LWError

    from lw_train import DPOConfig, SFTConfig

    try:
        settings = (*overrides, "resume=true") if resume else tuple(overrides)
        if kind == "sft":
            from lw_train import train_sft

            result = train_sft(SFTConfig.from_file(path, settings))
        else:
            from lw_train import train_dpo

            result = train_dpo(DPOConfig.from_file(path, settings))
    except LWError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(f"model: {result.output_dir}")
