"""One way to configure lw: pydantic models, read from TOML, YAML or JSON files, with ``--set KEY=VALUE`` overrides.

Every command that takes a configuration (``lw-train sft|dpo|grpo``, ``lw reproduce``) reads it here, so a file and
a ``--set`` mean the same thing everywhere:

- **Files**: ``.toml``, ``.yaml``/``.yml`` (needs PyYAML) or ``.json``, holding a table of settings.
- **Overrides**: ``--set KEY=VALUE``; a dotted key reaches a nested table (``lora.r=8``, ``bench.items=5``). The
  value is a TOML value (``2``, ``1e-5``, ``true``, ``"text"``, ``[1, 2]``, ``{repeat_penalty = 1.15}``); anything
  TOML does not read as one value is the text itself, so a bare word or a path needs no quotes (``lr_scheduler=
  cosine``, ``data=runs/sft.jsonl``). An empty value (``KEY=``) removes the key: the setting falls back to its
  default (``--set lora=`` turns off a file's LoRA).
- **Errors** are one line naming the file (or the ``--set``) and the field: ``sft.toml: field 'learning_rte':
  unknown key (a typo?); known keys: ...``.

>>> from pydantic import BaseModel, ConfigDict, Field
>>> class Run(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     steps: int = Field(10, ge=1, description="optimizer steps")
...     scheduler: str = Field("cosine", description="learning-rate schedule")
>>> values = apply_assignments({"steps": 4}, parse_assignments(["scheduler=linear"]))
>>> validate_config(Run, values, source="run.toml")
Run(steps=4, scheduler='linear')
>>> validate_config(Run, {"steps": 0}, source="run.toml")
Traceback (most recent call last):
lw_core.config.ConfigError: run.toml: field 'steps': Input should be greater than or equal to 1 (got 0)
"""

from __future__ import annotations

import datetime
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from lw_core.errors import LWError

__all__ = [
    "UNSET",
    "Assignment",
    "ConfigError",
    "apply_assignments",
    "describe_fields",
    "merge",
    "parse_assignment",
    "parse_assignments",
    "parse_value",
    "read_config",
    "validate_config",
]

M = TypeVar("M", bound=BaseModel)
FORMATS = (".toml", ".yaml", ".yml", ".json")


class ConfigError(LWError):
    """A configuration file or a ``--set`` is unusable; the message names the file (or the ``--set``) and field.

    Packages raise their own subclass (``lw_train.ConfigError``, ``lw_reproduce.ConfigError``) through the
    ``error`` argument of this module's functions, so one ``except lw_core.config.ConfigError`` catches them all.
    """


class _Unset:
    """The value of ``KEY=`` (nothing after the ``=``): the key is removed, so its default applies."""

    def __repr__(self) -> str:
        return "UNSET"


#: What ``parse_value("")`` returns: :func:`apply_assignments` removes the key it is given for.
UNSET: Any = _Unset()


class Assignment(NamedTuple):
    """One ``--set KEY=VALUE``: the dotted key and the value read by :func:`parse_value`."""

    key: str
    value: Any


def read_config(path: str | Path, *, error: type[LWError] = ConfigError) -> dict[str, Any]:
    """The table of settings in ``path`` (``.toml``, ``.yaml``/``.yml`` or ``.json``); an empty file is ``{}``.

    Anything else (a missing file, a folder, bytes that are not UTF-8 text, a syntax error with its line, a file
    whose top level is not a table) raises ``error`` with one line naming the path.
    """
    path = Path(path)
    if path.suffix not in FORMATS:
        raise error(f"{path}: unknown config format {path.suffix or '(no suffix)'!r}; use .toml, .yaml or .json")
    if path.is_dir():
        raise error(f"{path}: is a folder; expected a config file (.toml, .yaml or .json)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a text file (byte {exc.start} is not UTF-8); expected TOML, YAML or JSON") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    values = _parse(path, text, error)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise error(f"{path}: expected a table of key = value settings, got {type(values).__name__}")
    return values


def _parse(path: Path, text: str, error: type[LWError]) -> Any:
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise error(f"{path}: cannot read it as TOML: {exc}") from None
    if path.suffix == ".json":
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{exc.lineno}: cannot read it as JSON: {exc.msg} (column {exc.colno})") from None
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise error(f"{path}: reading YAML needs PyYAML: pip install pyyaml (or use a .toml file)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}{line}: cannot read it as YAML: {problem}") from None


def parse_value(raw: str) -> Any:
    """A ``--set`` value: one TOML value, else the text itself (a bare word or a path); empty: :data:`UNSET`.

    >>> [parse_value(v) for v in ("2", "1e-5", "true", '"2"', "[1, 2]", "cosine", "runs/a.jsonl", "2024-01-01")]
    [2, 1e-05, True, '2', [1, 2], 'cosine', 'runs/a.jsonl', '2024-01-01']
    >>> parse_value("{repeat_penalty = 1.15}"), parse_value("")
    ({'repeat_penalty': 1.15}, UNSET)
    """
    text = raw.strip()
    if not text:
        return UNSET
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    value = parsed.get("value")
    # one value only (a newline cannot smuggle in another key); no setting is a date, so TOML's dates stay text
    if len(parsed) != 1 or isinstance(value, datetime.date | datetime.time):
        return text
    return value


def parse_assignment(pair: str, *, option: str = "--set", error: type[LWError] = ConfigError) -> Assignment:
    """``"lora.r=8"`` → ``Assignment("lora.r", 8)``: the dotted key and its :func:`parse_value` value.

    >>> parse_assignment("bench.items=5")
    Assignment(key='bench.items', value=5)
    >>> parse_assignment("items")
    Traceback (most recent call last):
    lw_core.config.ConfigError: --set 'items': expected KEY=VALUE, e.g. --set max_steps=2
    """
    key, sep, raw = pair.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise error(f"{option} {pair!r}: expected KEY=VALUE, e.g. {option} max_steps=2")
    return Assignment(key, parse_value(raw))


def parse_assignments(
    pairs: Iterable[str | Assignment], *, option: str = "--set", error: type[LWError] = ConfigError
) -> dict[str, Any]:
    """``["bench.items=5", "name=exp"]`` → ``{"bench.items": 5, "name": "exp"}`` (a later pair wins).

    Pairs already parsed (the :class:`Assignment` values of a command's ``--set``) are taken as they are.

    >>> parse_assignments(["bench.items=5", "name=exp", "agentwrite.sampling={repeat_penalty = 1.15}"])
    {'bench.items': 5, 'name': 'exp', 'agentwrite.sampling': {'repeat_penalty': 1.15}}
    """
    return dict(
        pair if isinstance(pair, Assignment) else parse_assignment(pair, option=option, error=error) for pair in pairs
    )


def apply_assignments(values: dict[str, Any], assignments: Mapping[str, Any]) -> dict[str, Any]:
    """Set each dotted key of ``assignments`` in the nested ``values`` (in place, returned); :data:`UNSET` removes it.

    >>> apply_assignments({"lora": {"r": 16}, "steps": 2}, {"lora.r": 8, "steps": UNSET})
    {'lora': {'r': 8}}
    """
    for dotted, value in assignments.items():
        keys = [key.strip() for key in dotted.split(".")]
        table = values
        for key in keys[:-1]:
            nested = table.get(key)
            if not isinstance(nested, dict):
                if value is UNSET:
                    break
                nested = table[key] = {}
            table = nested
        else:
            if value is UNSET:
                table.pop(keys[-1], None)
            else:
                table[keys[-1]] = value
    return values


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` laid over ``base`` (in place, returned): tables merge key by key, anything else is replaced.

    >>> merge({"bench": {"items": 5, "ruler": True}}, {"bench": {"items": 9}})
    {'bench': {'items': 9, 'ruler': True}}
    """
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def validate_config(
    model: type[M],
    values: Mapping[str, Any],
    *,
    source: str | Path | None = None,
    assigned: Iterable[str] = (),
    error: type[LWError] = ConfigError,
) -> M:
    """``model`` validated from ``values``; its first problem raised as ``error``, one line naming the field.

    The line starts with ``source`` (the file), or with ``--set KEY`` when the field's value came from one of the
    ``assigned`` dotted keys; an unknown key lists the known ones, a missing one says how to set it.
    """
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise error(explain(exc, model, source=source, assigned=assigned)) from None


def explain(
    exc: ValidationError, model: type[BaseModel], *, source: str | Path | None = None, assigned: Iterable[str] = ()
) -> str:
    """The first problem of a pydantic ``ValidationError`` as ``where: field 'a.b': what (got value)``."""
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"]]
    field = ".".join(location)
    from_flag = next((key for key in assigned if field == key or field.startswith(key + ".")), None)
    where = f"--set {from_flag}" if from_flag else str(source or "config")
    prefix = f"{where}: field '{field}'"
    if first["type"] == "extra_forbidden":
        return f"{prefix}: unknown key (a typo?); known keys: {', '.join(sorted(_fields_at(model, location[:-1])))}"
    if first["type"] == "missing":
        return f"{prefix}: required; set it in the file or with --set {field}=..."
    shown = first.get("input")
    got = f" (got {shown!r})" if not isinstance(shown, dict | list) else ""
    return f"{prefix}: {first['msg']}{got}"


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the (nested) model at ``path``; the top level's when the path leaves the models."""
    current: type[BaseModel] = model
    for part in path:
        field = current.model_fields.get(part)
        nested = getattr(field, "annotation", None) if field is not None else None
        candidates = [nested, *getattr(nested, "__args__", ())]
        found = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if found is None:
            return list(current.model_fields)
        current = found
    return list(current.model_fields)


def describe_fields(model: type[BaseModel]) -> list[tuple[str, str, str]]:
    """``(name, default, description)`` of every field, for a command's ``--help`` and the documentation.

    >>> from pydantic import BaseModel, Field
    >>> class Run(BaseModel):
    ...     steps: int = Field(10, description="optimizer steps")
    ...     data: str = Field(description="training records")
    >>> describe_fields(Run)
    [('steps', '10', 'optimizer steps'), ('data', 'required', 'training records')]
    """
    rows = []
    for name, field in model.model_fields.items():
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            if isinstance(value, list):
                value = [v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v for v in value]
            elif isinstance(value, BaseModel):
                value = value.model_dump(exclude_none=True)
            default = json.dumps(value, default=str)
        rows.append((name, default, field.description or ""))
    return rows
