"""Bad input, one way: every command that reads a file or folder refuses a broken one with one line and exit 1.

Each command is fed an empty file, a binary file (NUL bytes, invalid UTF-8), a JSONL (or config) file whose second
line is malformed after a good first one, and, where it reads a folder, a folder lacking what it must hold. Each
must exit 1 with one line on stderr naming the path (and ``:2`` where a line is at fault), no traceback, and leave
an existing output exactly as it was. Every failure happens while reading input: no model is trained or served.

Where an empty input is legitimately nothing to do, the case asserts that documented behaviour instead (see
``EMPTY_IS_FINE``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

SCRIPTS = {e.name: e for e in entry_points(group="console_scripts") if e.value.startswith("lw_")}
SENTINEL = b'{"sentinel": "an earlier result the failed command must not touch"}\n'
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd\x00\xc3\x28\n\x80\x81garbage\x00\xa0\xa1"
SERVER = ["--base-url", "http://127.0.0.1:9/v1", "--model", "m"]  # never reached: input fails first

INSTRUCTION = {"id": "a", "prompt": "Write about rivers in 300 words.", "length": 300}
DOCUMENT = {"id": "a", "instruction": INSTRUCTION, "text": "Rivers run.", "status": "done"}
PREDICTION = {"id": "a", "prompt": "Write 300 words.", "response": "Rivers run.", "length": 300}
JUDGMENT = {"id": "a", "scores": {"relevance": 8}}
SFT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
PAIR = {
    "prompt": [{"role": "user", "content": "Hi"}],
    "chosen": [{"role": "assistant", "content": "Hello."}],
    "rejected": [{"role": "assistant", "content": "Go."}],
}
PLAN = {"instruction_id": "a", "steps": [{"index": 1, "main_point": "Rivers", "word_count": 300}]}


@dataclass(frozen=True)
class Case:
    """One command reading one bad input: ``argv(bad, tmp)`` runs it; ``output`` (under tmp) must stay as it was."""

    script: str
    argv: Callable[[Path, Path], list[str]]
    output: str  # an earlier result (or, for a command that writes nothing, a bystander file)
    good_line: dict[str, object] | None = None  # a valid first line (JSONL) ...
    config_line: str | None = None  # ... or a valid first line of a TOML config
    suffix: str = ".jsonl"
    folder: bool = False  # also fed an empty folder
    setup: Callable[[Path], None] | None = None
    fresh: bool = False  # the command refuses an existing output: ``output`` must not appear instead


def _write_jsonl(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _train_config(data: str = "data.jsonl", model: str = "model") -> Callable[[Path, Path], list[str]]:
    """lw-train reading a config whose ``data`` (or ``model``) is the bad input, in a tmp with a tiny model folder."""

    def argv(bad: Path, tmp: Path) -> list[str]:
        values = {"data": str(tmp / "data.jsonl"), "model": str(tmp / "model"), "output_dir": str(tmp / "out")}
        values.update({"data": str(bad)} if data == "bad" else {})
        values.update({"model": str(bad)} if model == "bad" else {})
        config = tmp / "train.toml"
        config.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()), encoding="utf-8")
        return ["--config", str(config)]

    return argv


def _tiny_model(tmp: Path) -> None:
    """A model folder with config.json and a byte-level tokenizer: loads in a blink, and is never trained."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer.save_pretrained(tmp / "model")
    LlamaConfig(vocab_size=256, hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(
        tmp / "model"
    )
    _write_jsonl(tmp / "data.jsonl", SFT)


def _train(setup_data: dict[str, object]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        _tiny_model(tmp)
        _write_jsonl(tmp / "data.jsonl", setup_data)

    return setup


CASES: dict[str, Case] = {
    # lw-data
    "lw-data instructions": Case(
        "lw-data", lambda bad, tmp: ["instructions", str(bad), "-o", str(tmp / "out.jsonl")], "out.jsonl",
        INSTRUCTION, folder=True,
    ),
    "lw-data build-sft": Case(
        "lw-data", lambda bad, tmp: ["build-sft", str(bad), "-o", str(tmp / "out.jsonl")], "out.jsonl", DOCUMENT
    ),
    "lw-data build-dpo": Case(
        "lw-data",
        lambda bad, tmp: ["build-dpo", str(bad), "--length-weight", "1", "-o", str(tmp / "out.jsonl")],
        "out.jsonl",
        PREDICTION,
    ),
    "lw-data build-dpo judgments": Case(
        "lw-data",
        lambda bad, tmp: ["build-dpo", str(_write_jsonl(tmp / "p.jsonl", PREDICTION)), str(bad), "-o",
                          str(tmp / "out.jsonl")],
        "out.jsonl",
        JUDGMENT,
    ),
    "lw-data mix": Case(
        "lw-data",
        lambda bad, tmp: ["mix", str(bad), str(_write_jsonl(tmp / "g.jsonl", SFT)), "-o", str(tmp / "out")],
        "out/train.jsonl",
        SFT,
        folder=True,
    ),
    "lw-data stats": Case("lw-data", lambda bad, tmp: ["stats", str(bad), "--png", str(tmp / "s.png")], "s.png", SFT),
    "lw-data export": Case(
        "lw-data", lambda bad, tmp: ["export", str(bad), "-o", str(tmp / "out.jsonl")], "out.jsonl", SFT, folder=True
    ),
    # lw-agentwrite
    **{
        f"lw-agentwrite {command} --in": Case(
            "lw-agentwrite",
            lambda bad, tmp, command=command: [command, "--in", str(bad), "--out", str(tmp / "out.jsonl"), *SERVER,
                                               *(["--plans", str(_write_jsonl(tmp / "pl.jsonl", PLAN))]
                                                 if command == "write" else [])],
            "out.jsonl",
            INSTRUCTION,
        )
        for command in ("plan", "write", "run")
    },
    "lw-agentwrite write --plans": Case(
        "lw-agentwrite",
        lambda bad, tmp: ["write", "--in", str(_write_jsonl(tmp / "i.jsonl", INSTRUCTION)), "--plans", str(bad),
                          "--out", str(tmp / "out.jsonl"), *SERVER],
        "out.jsonl",
        PLAN,
    ),
    # lw-bench
    "lw-bench score": Case(
        "lw-bench", lambda bad, tmp: ["score", "--predictions", str(bad), "-o", str(tmp / "r.json")], "r.json",
        PREDICTION,
    ),
    "lw-bench score --judgments": Case(
        "lw-bench",
        lambda bad, tmp: ["score", "--predictions", str(_write_jsonl(tmp / "p.jsonl", PREDICTION)), "--judgments",
                          str(bad), "-o", str(tmp / "r.json")],
        "r.json",
        JUDGMENT,
    ),
    "lw-bench report": Case(
        "lw-bench", lambda bad, tmp: ["report", "--predictions", str(bad), "-o", str(tmp / "rep")], "rep/report.json",
        PREDICTION,
    ),
    "lw-bench judge": Case(
        "lw-bench", lambda bad, tmp: ["judge", "--predictions", str(bad), "-o", str(tmp / "j.jsonl"), *SERVER],
        "j.jsonl", PREDICTION,
    ),
    "lw-bench compare": Case(
        "lw-bench", lambda bad, tmp: ["compare", str(bad), "-o", str(tmp / "cmp")], "cmp/comparison.json",
        suffix=".json", folder=True,
    ),
    # lw-serve
    "lw-serve export-gguf": Case(
        "lw-serve", lambda bad, tmp: ["export-gguf", str(bad), "-o", str(tmp / "m.gguf")], "m.gguf",
        folder=True, suffix=".gguf", fresh=True,
    ),
    "lw-serve models --hf": Case(
        "lw-serve", lambda bad, tmp: ["models", str(bad), "--hf"], "other.txt", folder=True, suffix=".gguf"
    ),
    "lw-serve up": Case(
        "lw-serve", lambda bad, tmp: ["up", "--model", str(bad), "--port", "9"], "other.txt",
        folder=True, suffix=".gguf",
    ),
    # lw-train
    "lw-train pack": Case(
        "lw-train",
        lambda bad, tmp: ["pack", str(bad), "--tokenizer", str(tmp / "model"), "-o", str(tmp / "bins.json")],
        "bins.json",
        SFT,
        setup=_tiny_model,
    ),
    "lw-train pack --tokenizer": Case(
        "lw-train",
        lambda bad, tmp: ["pack", str(tmp / "data.jsonl"), "--tokenizer", str(bad), "-o", str(tmp / "bins.json")],
        "bins.json",
        folder=True,
        setup=_tiny_model,
    ),
    **{
        f"lw-train {command} --config": Case(
            "lw-train",
            lambda bad, tmp, command=command: [command, "--config", str(bad)],
            "out/notes.txt",
            config_line='model = "model"',
            suffix=".toml",
        )
        for command in ("sft", "dpo", "grpo")
    },
    "lw-train sft data": Case(
        "lw-train", lambda bad, tmp: ["sft", *_train_config(data="bad")(bad, tmp)], "out/notes.txt", SFT,
        setup=_train(SFT),
    ),
    "lw-train dpo data": Case(
        "lw-train", lambda bad, tmp: ["dpo", *_train_config(data="bad")(bad, tmp)], "out/notes.txt", PAIR,
        setup=_train(PAIR),
    ),
    "lw-train grpo data": Case(
        "lw-train", lambda bad, tmp: ["grpo", *_train_config(data="bad")(bad, tmp)], "out/notes.txt", INSTRUCTION,
        setup=_train(INSTRUCTION),
    ),
    **{
        f"lw-train {command} model": Case(
            "lw-train",
            lambda bad, tmp, command=command: [command, *_train_config(model="bad")(bad, tmp)],
            "out/notes.txt",
            folder=True,
            suffix="",
            setup=_train(row),
        )
        for command, row in (("sft", SFT), ("dpo", PAIR), ("grpo", INSTRUCTION))
    },
    # lw (reproduce)
    "lw reproduce --config": Case(
        "lw", lambda bad, tmp: ["reproduce", "--config", str(bad), "--dry-run", "--runs", str(tmp / "runs")],
        "other.txt", config_line='name = "x"', suffix=".toml",
    ),
}  # fmt: skip

#: The public data beside the checkout (``../shared/data``), as on dev machines and in CI.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

#: Cases where an empty input is nothing to do, not an error, and what they print instead (exit 0): a shard of
#: instructions may hold none, and a config file over a profile may change nothing.
EMPTY_IS_FINE: dict[str, str] = {
    "lw-agentwrite plan --in": "0/0 instructions",
    "lw-agentwrite write --in": "0/0 instructions",
    "lw-agentwrite run --in": "0/0 instructions",
    "lw reproduce --config": "nothing was run (--dry-run)",
}


def _inputs() -> list[tuple[str, str]]:
    found = []
    for name, case in CASES.items():
        kinds = ["empty", "binary"] if case.suffix else []
        if case.good_line is not None or case.config_line is not None:
            kinds.append("malformed")
        if case.folder:
            kinds.append("folder")
        found += [(name, kind) for kind in kinds]
    return found


def _bad_input(tmp: Path, case: Case, kind: str) -> Path:
    path = tmp / f"bad{case.suffix}"
    if kind == "folder":
        path = tmp / "bad_folder"
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(BINARY)
    elif case.config_line is not None:
        path.write_text(f"{case.config_line}\nthis is = = not toml\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(case.good_line) + '\n{"id": "b", "prompt": \n', encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "kind"), _inputs(), ids=[f"{n} {k}" for n, k in _inputs()])
def test_bad_input_is_one_line_and_exit_1(
    name: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LW_DATA_DIR", str(SHARED_DATA))  # lw reproduce --dry-run estimates from LongBench-Write
    case = CASES[name]
    app = SCRIPTS[case.script].load()
    assert isinstance(app, typer.Typer)
    if case.setup is not None:
        case.setup(tmp_path)
    output = tmp_path / case.output
    if not case.fresh:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(SENTINEL)
    bad = _bad_input(tmp_path, case, kind)

    result = CliRunner().invoke(app, case.argv(bad, tmp_path))

    lines = result.stderr.strip().splitlines()
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output + result.stderr
    if kind == "empty" and name in EMPTY_IS_FINE:
        assert result.exit_code == 0, result.stderr
        assert EMPTY_IS_FINE[name] in result.output + result.stderr
    else:
        assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
        assert len(lines) == 1, result.stderr
        assert str(bad) in lines[0] or str(bad.resolve()) in lines[0], lines[0]
        if kind == "malformed":
            assert f"{bad}:2" in lines[0] or "line 2" in lines[0], lines[0]
    if case.fresh:
        assert not output.exists(), f"{case.output} was written"
    else:
        assert output.read_bytes() == SENTINEL, f"{case.output} was touched"
