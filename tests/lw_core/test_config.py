"""lw_core.config: the one loader and ``--set`` grammar every lw command with a configuration uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from lw_core import LWError
from lw_core.config import (
    UNSET,
    ConfigError,
    apply_assignments,
    describe_fields,
    merge,
    parse_assignment,
    parse_assignments,
    parse_value,
    read_config,
    validate_config,
)
from pydantic import BaseModel, ConfigDict, Field


class _Lora(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1)


class _Run(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str = Field(description="training records")
    steps: int = Field(10, ge=1, description="optimizer steps")
    lora: _Lora | None = Field(None, description="adapters")


class _PackageError(LWError):
    """A package's own config error (lw_train.ConfigError, ...)."""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2", 2),
        ("-3", -3),
        ("1e-5", 1e-5),
        ("0.8", 0.8),
        ("true", True),
        ("false", False),
        ('"2"', "2"),  # quotes make a number text
        ("'a b'", "a b"),
        ("[1, 2]", [1, 2]),
        ('["q_proj", "v_proj"]', ["q_proj", "v_proj"]),
        ("{repeat_penalty = 1.15}", {"repeat_penalty": 1.15}),
        ("cosine", "cosine"),  # a bare word is text
        ("runs/sft.jsonl", "runs/sft.jsonl"),  # so is a path
        ("/abs/path", "/abs/path"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("2024-01-01", "2024-01-01"),  # a TOML date: no setting is one
        ("null", "null"),  # TOML has no null: unset a key with KEY= instead
        ("1\nsteps = 5", "1\nsteps = 5"),  # a newline cannot smuggle in a second key
        ("  7  ", 7),
        ("", UNSET),
        ("   ", UNSET),
    ],
)
def test_set_values_are_toml_and_bare_words_are_text(raw: str, expected: object) -> None:
    assert parse_value(raw) == expected
    assert type(parse_value(raw)) is type(expected)


def test_assignments_name_the_flag_and_the_package_error() -> None:
    assert parse_assignment(" lora.r = 8") == ("lora.r", 8)
    assert parse_assignments(["steps=2", "steps=3", "data=a=b.jsonl"]) == {"steps": 3, "data": "a=b.jsonl"}
    for bad in ("steps", "=2", "a..b=1", ".a=1"):
        with pytest.raises(_PackageError, match=rf"--set '{bad}': expected KEY=VALUE"):
            parse_assignment(bad, error=_PackageError)
    with pytest.raises(ConfigError, match=r"--sampling 'x': expected KEY=VALUE, e.g. --sampling"):
        parse_assignments(["x"], option="--sampling")


def test_assignments_reach_nested_tables_and_unset_removes() -> None:
    values = {"lora": {"r": 16}, "steps": 2, "data": "a"}
    apply_assignments(values, {"lora.r": 8, "new.deep.key": [1], "steps": UNSET, "absent.key": UNSET})
    assert values == {"lora": {"r": 8}, "data": "a", "new": {"deep": {"key": [1]}}}
    apply_assignments(values, {"lora": UNSET, "data": {"x": 1}})
    assert values == {"data": {"x": 1}, "new": {"deep": {"key": [1]}}}


def test_merge_lays_tables_over_tables() -> None:
    base = {"bench": {"items": 5, "ruler": True}, "name": "a"}
    assert merge(base, {"bench": {"items": 9}, "name": {"x": 1}}) == {
        "bench": {"items": 9, "ruler": True},
        "name": {"x": 1},
    }


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".yml", ".json"])
def test_each_format_reads_to_the_same_table(tmp_path: Path, suffix: str) -> None:
    text = {
        ".toml": 'data = "a.jsonl"\nsteps = 3\n[lora]\nr = 8\n',
        ".yaml": "data: a.jsonl\nsteps: 3\nlora:\n  r: 8\n",
        ".yml": "data: a.jsonl\nsteps: 3\nlora:\n  r: 8\n",
        ".json": '{"data": "a.jsonl", "steps": 3, "lora": {"r": 8}}',
    }[suffix]
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    assert read_config(path) == {"data": "a.jsonl", "steps": 3, "lora": {"r": 8}}
    path.write_text("")
    assert read_config(path) == {}  # empty: no settings (validation then names what is required)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("run.toml", b"steps = 3\nlr = = 2\n", r"run.toml: cannot read it as TOML: .*line 2"),
        ("run.yaml", b"steps: 3\n  bad: [\n", r"run.yaml:\d+: cannot read it as YAML"),
        ("run.json", b'{"steps": 3,\n "lr": }', r"run.json:2: cannot read it as JSON"),
        ("run.toml", b"\x00\x01\xff\xfe binary", r"run.toml: not a text file \(byte \d+ is not UTF-8\)"),
        ("run.yaml", b"- 1\n- 2\n", r"run.yaml: expected a table of key = value settings, got list"),
        ("run.json", b"[1, 2]", r"run.json: expected a table of key = value settings, got list"),
        ("run.ini", b"[x]\n", r"run.ini: unknown config format '.ini'; use .toml, .yaml or .json"),
    ],
)
def test_unreadable_files_name_the_path_and_line(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(_PackageError, match=message):
        read_config(path, error=_PackageError)


def test_a_missing_file_or_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent.toml: config file not found"):
        read_config(tmp_path / "absent.toml")
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ConfigError, match=r"folder.toml: is a folder"):
        read_config(tmp_path / "folder.toml")


def test_validation_names_the_file_or_the_set_and_the_field() -> None:
    assert validate_config(_Run, {"data": "a", "lora": {"r": 4}}).lora == _Lora(r=4)
    with pytest.raises(
        ConfigError, match=r"^run.toml: field 'steps': Input should be greater than or equal to 1 \(got 0\)$"
    ):
        validate_config(_Run, {"data": "a", "steps": 0}, source="run.toml")
    with pytest.raises(ConfigError, match=r"^--set steps: field 'steps': Input should be a valid integer"):
        validate_config(_Run, {"data": "a", "steps": "many"}, source="run.toml", assigned=["steps"])
    with pytest.raises(ConfigError, match=r"^--set lora: field 'lora.r'"):
        validate_config(_Run, {"data": "a", "lora": {"r": 0}}, source="run.toml", assigned=["lora"])
    with pytest.raises(ConfigError, match=r"run.toml: field 'data': required; set it in the file or with --set data="):
        validate_config(_Run, {}, source="run.toml")
    with pytest.raises(ConfigError, match=r"field 'stepz': unknown key \(a typo\?\); known keys: data, lora, steps$"):
        validate_config(_Run, {"data": "a", "stepz": 1}, source="run.toml")
    with pytest.raises(ConfigError, match=r"field 'lora.alpha': unknown key \(a typo\?\); known keys: r$"):
        validate_config(_Run, {"data": "a", "lora": {"alpha": 1}}, source="run.toml")


def test_fields_are_described_for_help_and_docs() -> None:
    assert describe_fields(_Run) == [
        ("data", "required", "training records"),
        ("steps", "10", "optimizer steps"),
        ("lora", "null", "adapters"),
    ]
