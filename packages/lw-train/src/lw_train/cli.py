"""The `lw-train` command line: packed SFT, DPO and GRPO from a config file, and bin planning for an SFT file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from lw_core.cli import Assignments, config_keys_help, new_app, user_errors
from lw_core.config import Assignment
from pydantic import BaseModel
from rich.console import Console

from lw_train.config import DPOConfig, GRPOConfig, LoraSettings, RewardSpec, SFTConfig
from lw_train.packing import Strategy

app = new_app(
    "lw-train", "lw-train: packed SFT, DPO and GRPO for long-output models (configs in recipes/), and bin planning."
)
console = Console(stderr=True, soft_wrap=True)


@app.command()
@user_errors
def pack(
    data: Annotated[Path, typer.Argument(help="SFT file (JSONL of lw SFTRecord / {'messages': [...]})")],
    tokenizer: Annotated[str, typer.Option(help="Hugging Face tokenizer: a local folder or hub name")],
    max_tokens: Annotated[int, typer.Option(min=1, help="bin capacity in tokens (the training row length)")] = 32_768,
    strategy: Annotated[Strategy, typer.Option(help="bfd (best fit), nextfit (the original), sorted-nextfit, none")] = (
        "bfd"
    ),
    overlong: Annotated[
        Literal["drop", "truncate", "error"], typer.Option(help="samples over --max-tokens: drop, truncate or error")
    ] = "drop",
    num_ranks: Annotated[int, typer.Option(min=1, help="data-parallel ranks that must get equal step counts")] = 1,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="write the bins (JSON) here")] = None,
) -> None:
    """Tokenize (cached under $LW_HOME), pack into bins and report fill; optionally save the bins."""
    from lw_core.jsonl import atomic_write, read_jsonl
    from lw_core.schemas import SFTRecord
    from transformers import AutoTokenizer

    from lw_train import TrainError, pack_fill, tokenize_chats
    from lw_train import pack as pack_bins

    with console.status("reading and tokenizing"):
        records = list(read_jsonl(data, SFTRecord))
        if not records:
            raise TrainError(f"{data}: holds no records: nothing to pack")
        try:
            loaded = AutoTokenizer.from_pretrained(tokenizer)
        except (OSError, ValueError) as error:  # a folder without tokenizer files is a ValueError
            problem = str(error).splitlines()[0]
            raise TrainError(f"--tokenizer {tokenizer}: cannot load a tokenizer from it ({problem})") from None
        samples = tokenize_chats(records, loaded, max_tokens=max_tokens, overlong=overlong)
    lengths = samples.lengths
    bins = pack_bins(lengths, max_tokens, strategy, num_ranks=num_ranks)
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
ResumeOption = Annotated[bool, typer.Option("--resume", help="continue from the last finished checkpoint")]


def _help(summary: str, model: type[BaseModel]) -> str:
    return f"{summary}\n\nConfig keys (set in the file or with --set KEY=VALUE):\n\n{config_keys_help(model)}"


@app.command(
    help=_help(
        "Packed SFT on lw SFT records: the final model is written to output_dir, with summary.json and log.jsonl.",
        SFTConfig,
    )
    + "\n\nlora, when set: "
    + config_keys_help(LoraSettings, "; ")
)
@user_errors
def sft(config: ConfigOption, set_: Assignments = None, resume: ResumeOption = False) -> None:
    from lw_train import train_sft

    result = train_sft(SFTConfig.from_file(config, _settings(set_, resume)))
    console.print(f"model: {result.output_dir}")


@app.command(
    help=_help("DPO (TRL's DPOTrainer) on lw preference pairs; the final model is written to output_dir.", DPOConfig)
)
@user_errors
def dpo(config: ConfigOption, set_: Assignments = None, resume: ResumeOption = False) -> None:
    from lw_train import train_dpo

    result = train_dpo(DPOConfig.from_file(config, _settings(set_, resume)))
    console.print(f"model: {result.output_dir}")


@app.command(
    help=_help(
        "GRPO (TRL's GRPOTrainer) on lw Instruction prompts with rewards named by import string (default: "
        "lw-bench's length and repetition rewards); the final model is written to output_dir with summary.json, "
        "log.jsonl (reward parts, completion lengths, degenerate share per step), completions.jsonl and rewards.png.",
        GRPOConfig,
    )
    + "\n\nEach entry of rewards: "
    + config_keys_help(RewardSpec, "; ")
)
@user_errors
def grpo(config: ConfigOption, set_: Assignments = None, resume: ResumeOption = False) -> None:
    from lw_train import train_grpo

    result = train_grpo(GRPOConfig.from_file(config, _settings(set_, resume)))
    console.print(f"model: {result.output_dir}")


def _settings(overrides: list[Assignment] | None, resume: bool) -> list[Assignment]:
    return [*(overrides or ()), *([Assignment("resume", True)] if resume else [])]
