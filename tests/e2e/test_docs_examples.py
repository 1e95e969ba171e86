"""Every code example of the READMEs and of the documentation site runs; one that breaks fails here.

Collected: the fenced blocks of ``README.md``, ``packages/*/README.md``, ``apps/*/README.md``, ``recipes/README.md``
and ``docs/**/*.md``. By language:

- ``python``: run by a fresh interpreter in an empty temporary folder (``recipes/`` linked in, ``LW_DATA_DIR`` set
  when ``../shared/data`` exists); it must exit 0.
- ``bash``: run by ``bash -euo pipefail`` there, with the environment's ``lw-*`` commands on ``PATH``; ``console``:
  the same for its ``$ `` lines. They must exit 0.
- ``toml``, ``json``, ``yaml``: must parse. Other languages (``mermaid``, ``text``) are not examples. A block without
  a language that holds a command line fails: tag it ``bash``.

A comment on the line before a block says otherwise, visibly in the source:

- ``<!-- not-run: REASON -->``: not run here (it serves until Ctrl-C, runs for hours, needs a key or GPUs). Python
  must still compile, and every ``lw``/``lw-*`` command line (also ``python -m lw_x`` and ``accelerate launch ...
  -m lw_x``) is checked against that CLI: its commands, options, option values and the count of arguments. Paths
  need not exist; ``[--opt a|b]`` reads as ``--opt a``; a last ``...`` stands for options shown before (so required
  ones may be missing).
- ``<!-- run-by: tests/PACKAGE/test_FILE.py -->``: that package test runs the block with the inputs it prepares; it
  is checked here as above.
- ``<!-- slow: REASON -->``: run here, marked slow (it loads the embedded model).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import typing
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pydantic
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        *ROOT.glob("packages/*/README.md"),
        *ROOT.glob("apps/*/README.md"),
        ROOT / "recipes" / "README.md",
        *(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts),
    ]
)
_FENCE = re.compile(r"^(`{3,}|~{3,})([\w+-]*)[^\n`]*$")
_MARK = re.compile(r"^<!-- (not-run|run-by|slow): (.+?) -->$")
_COMMAND_LIKE = re.compile(r"^(\$ |lw[\w-]* |python |hatch |accelerate |[A-Z_]+=)")
SHELLS = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and the mark before it (``kind``, ``note``)."""

    path: Path
    line: int
    language: str
    text: str
    kind: str | None
    note: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, with the mark on the nearest non-blank line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, language = opening.groups()
        end = next(
            (k for k in range(index + 1, len(lines)) if lines[k].startswith(fence) and not lines[k].strip(fence[0])),
            None,
        )
        assert end is not None, f"{path.relative_to(ROOT)}:{index + 1}: the code block never closes"
        before = next((lines[k].strip() for k in range(index - 1, -1, -1) if lines[k].strip()), "")
        mark = _MARK.match(before)
        text = "\n".join(lines[index + 1 : end]) + "\n"
        found.append(Block(path, index + 1, language, text, *(mark.groups() if mark else (None, ""))))
        index = end + 1
    return found


ALL = [block for path in DOCUMENTS for block in blocks(path)]
RUN_HERE = [b for b in ALL if b.kind in (None, "slow") and (b.language == "python" or b.language in SHELLS)]
CHECKED = [b for b in ALL if b.kind in ("not-run", "run-by") and (b.language == "python" or b.language in SHELLS)]
PARSED = [b for b in ALL if b.language in ("toml", "json", "yaml")]


def _params(blocks: list[Block]) -> list[Any]:
    return [pytest.param(b, id=b.where, marks=[pytest.mark.slow] if b.kind == "slow" else []) for b in blocks]


# --- command lines -------------------------------------------------------------------------------------------------


def command_lines(block: Block) -> list[str]:
    """The command lines of a shell block: continuations joined; for ``console``, only the ``$ `` lines."""
    lines, joined = block.text.splitlines(), list[str]()
    if block.language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        elif line.strip():
            joined.append(line.strip())
    return joined


def lw_invocations(line: str) -> list[list[str]]:
    """The ``lw``/``lw-*`` invocations of a command line, each as [program, *arguments], in the docs' notation."""
    line = re.sub(r"\[(--[^\]]+)\]", r"\1", line)  # [--opt a|b] -> --opt a|b
    tokens = shlex.split(line, comments=True)
    found, start = [], 0
    for index in [*(k for k, t in enumerate(tokens) if t in ("|", "&&", "||", ";", "&")), len(tokens)]:
        words = [w.split("|")[0] if "|" in w and not w.startswith("|") else w for w in tokens[start:index]]
        start = index + 1
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value before the command
        if "-m" in words and words[0] in ("python", "python3", "accelerate"):
            module = words[words.index("-m") + 1]
            words = [module.replace("_", "-"), *words[words.index("-m") + 2 :]]
        if words and re.fullmatch(r"lw(-[a-z]+)?", words[0]):
            found.append(words)
    return found


def _apps() -> dict[str, Any]:
    return {e.name: e for e in entry_points(group="console_scripts") if re.fullmatch(r"lw(-[a-z]+)?", e.name)}


def check_invocation(argv: list[str]) -> None:
    """Raise AssertionError when ``argv`` names a command, option or value its CLI does not have, or a wrong count of
    arguments. Nothing runs: the typer app's click command is only read."""
    import typer

    apps = _apps()
    assert argv[0] in apps, f"{argv[0]}: no such command installed (known: {sorted(apps)})"
    command: Any = typer.main.get_command(apps[argv[0]].load())  # read through click's public attributes only
    args, path = argv[1:], [argv[0]]
    elided = args[-1:] == ["..."]
    args = args[:-1] if elided else args
    while hasattr(command, "commands"):
        rest, used = _consume(command, args, path, elided=True)
        if not rest:
            assert "--help" in args or command.invoke_without_command, f"{' '.join(path)}: a command is missing"
            return
        assert rest[0] in command.commands, (
            f"{' '.join(path)} has no command {rest[0]!r} (has {sorted(command.commands)})"
        )
        path.append(rest[0])
        command, args = command.commands[rest[0]], args[used:]
    positional, _ = _consume(command, args, path, elided=elided)
    arguments = [p for p in command.params if not getattr(p, "opts", [""])[0].startswith("-")]
    unlimited = any(p.nargs < 0 for p in arguments)
    most = sum(max(p.nargs, 0) for p in arguments)
    fewest = sum(max(p.nargs, 1) for p in arguments if p.required)
    assert unlimited or len(positional) <= most, f"{' '.join(path)}: too many arguments {positional}"
    assert elided or "--help" in args or len(positional) >= fewest, f"{' '.join(path)}: missing arguments"


def _consume(command: Any, args: list[str], path: list[str], *, elided: bool) -> tuple[list[str], int]:
    """Read the options of ``args`` against ``command``; return the positional arguments and how many tokens were
    read. For a group, stop after the first positional one (its subcommand)."""
    options = {opt: p for p in command.params for opt in [*p.opts, *p.secondary_opts] if opt.startswith("-")}
    seen, positional, index = set[str](), list[str](), 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--help":
            return positional, index
        if not token.startswith("-") or token == "-":
            positional.append(token)
            if hasattr(command, "commands"):
                return positional, index
            continue
        name, has_inline, inline = token.partition("=")
        assert name in options, f"{' '.join(path)} has no option {name!r} (has {sorted(options)})"
        param = options[name]
        seen.add(param.name)
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            assert not has_inline, f"{' '.join(path)}: {name} takes no value"
            continue
        values = [inline] if has_inline else args[index : index + max(param.nargs, 1)]
        index += 0 if has_inline else len(values)
        assert len(values) == max(param.nargs, 1), f"{' '.join(path)}: {name} needs a value"
        problem = _value_problem(param, values[0])
        assert problem is None, f"{' '.join(path)}: {name} {values[0]!r}: {problem}"
    missing = [
        p.opts[0]
        for p in command.params
        if p.required and p.opts[0].startswith("-") and p.name not in seen and not p.envvar
    ]
    assert elided or not missing, f"{' '.join(path)}: required options missing: {missing}"
    return positional, index


def _value_problem(param: Any, value: str) -> str | None:
    """Why ``value`` is not a valid value of the typer option ``param`` (a choice, a number...), or None."""
    descriptor = getattr(param, "type_descriptor", None)
    parser = getattr(getattr(descriptor, "parameter_info", None), "parser", None)
    if parser is not None:  # the option's own parser (e.g. --set's KEY=VALUE grammar) reads the value
        try:
            parser(value)
        except Exception as error:
            return str(getattr(error, "message", None) or error)
        return None
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:
        return None
    if param.multiple and typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
    try:
        pydantic.TypeAdapter(annotation).validate_strings(value)
    except pydantic.ValidationError as error:
        return str(error.errors()[0]["msg"])
    return None


# --- the tests -----------------------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run examples in, with the repository's recipes (examples run "from the repository root")."""
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    return tmp_path


def _environment() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if SHARED_DATA.is_dir():
        env.setdefault("LW_DATA_DIR", str(SHARED_DATA))
    return env


@pytest.mark.parametrize("block", _params(RUN_HERE))
def test_example_runs(block: Block, workdir: Path) -> None:
    if block.language == "python":
        command = [sys.executable, "-c", block.text]
    else:
        command = ["bash", "-euo", "pipefail", "-c", "\n".join(command_lines(block))]
    result = subprocess.run(command, cwd=workdir, env=_environment(), capture_output=True, text=True, timeout=850)
    assert result.returncode == 0, f"{block.where} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


@pytest.mark.parametrize("block", _params(CHECKED))
def test_examples_not_run_here_are_checked(block: Block) -> None:
    """Python compiles; each lw command line matches its CLI (commands, options, values, argument count)."""
    if block.language == "python":
        compile(block.text, block.where, "exec")
        return
    for line in command_lines(block):
        for argv in lw_invocations(line):
            try:
                check_invocation(argv)
            except AssertionError as error:
                raise AssertionError(f"{block.where}: {line}\n{error}") from None


@pytest.mark.parametrize("block", _params(PARSED))
def test_data_blocks_parse(block: Block) -> None:
    if block.language == "toml":
        tomllib.loads(block.text)
    elif block.language == "json":
        json.loads(block.text)
    else:
        import yaml  # type: ignore[import-untyped]

        yaml.safe_load(block.text)


def test_every_block_is_accounted_for() -> None:
    """Marks name an existing test that reads the file, untagged blocks hold no commands, and a mark has a reason."""
    problems = []
    for block in ALL:
        first = block.text.lstrip().splitlines()[0] if block.text.strip() else ""
        if not block.language and _COMMAND_LIKE.match(first):
            problems.append(f"{block.where}: a command line in a block without a language: tag it ```bash")
        if block.kind == "run-by":
            runner = ROOT / block.note
            owner = block.path.relative_to(ROOT).parts
            if not runner.is_file():
                problems.append(f"{block.where}: run-by {block.note}: no such test file")
            elif not all(f'"{part}"' in runner.read_text(encoding="utf-8") for part in owner):
                problems.append(f"{block.where}: {block.note} does not read {'/'.join(owner)}")
        if block.kind and not block.note.strip():
            problems.append(f"{block.where}: {block.kind} needs a reason")
    assert problems == []


def test_the_convention_catches_mistakes() -> None:
    """The checker itself: what a stale example looks like fails, what the docs write passes."""
    check_invocation(["lw-bench", "judge", "--base-url", "u", "--model", "m", "--predictions", "p", "--out", "o"])
    check_invocation(
        lw_invocations("lw-serve export-gguf runs/sft/final --out f.gguf [--outtype f32|f16] [--force]")[0]
    )
    check_invocation(lw_invocations("accelerate launch --config_file x.yaml -m lw_train sft --config c.toml")[0])
    for stale in (
        "lw-bench judge --base-url u --model m --predictions p --out o --no-such-option",
        "lw-bench jugde --base-url u",
        "lw-bench judge --base-url u",  # required options missing
        "lw-serve export-gguf a b --out f.gguf",  # one argument too many
        "lw-serve export-gguf a --out f.gguf --outtype f17",  # not a value of the option
        "lw-data instructions --n many --out i.jsonl",  # not a number
        "lw-nothing up",
    ):
        with pytest.raises(AssertionError):
            check_invocation(lw_invocations(stale)[0])
    assert lw_invocations("OPENAI_API_KEY=x lw-bench score --data d | head # note") == [
        ["lw-bench", "score", "--data", "d"]
    ]
