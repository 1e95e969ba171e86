"""One error tree: each package has a base under ``lw_core.LWError``, and every error it defines is exported.

Every module of every package is imported (lw-train's torch modules too: a few seconds) and every exception class
it defines is checked, so a new error that skips the package's base or its top-level export fails here.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest
from lw_core import LWError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p for p in [*ROOT.glob("packages/*"), *ROOT.glob("apps/*")] if (p / "pyproject.toml").exists())

#: Each package's base error, exported from its top level; lw-core's is ``LWError`` itself.
BASES = {
    "lw_core": "LWError",
    "lw_agentwrite": "AgentWriteError",
    "lw_bench": "BenchError",
    "lw_data": "DataError",
    "lw_serve": "ServeError",
    "lw_train": "TrainError",
    "lw_reproduce": "ReproduceError",
}

#: Exceptions that never leave their module, and why (everything else must follow the rules).
INTERNAL = {
    "lw_core.client._Retryable": "OpenAIChatClient's signal for one more attempt; a caller only sees ClientError",
    "lw_serve.server._DiedBySignal": "Server's signal to start a crash fallback; a caller only sees ServerError",
}


def _modules(package: Path) -> list[ModuleType]:
    names = []
    for path in sorted((package / "src").rglob("*.py")):
        parts = path.relative_to(package / "src").with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [importlib.import_module(name) for name in names]


def _defined_errors(package: Path) -> dict[str, type[BaseException]]:
    """``module.Name`` → class, for every exception class defined at the top of one of the package's modules."""
    found = {}
    for module in _modules(package):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_every_error_is_under_the_package_base_and_exported(package: Path) -> None:
    top_name = next(p.name for p in (package / "src").iterdir() if (p / "__init__.py").exists())
    assert top_name in BASES, f"{package.name}: name its base error in BASES (an LWError subclass it exports)"
    top = importlib.import_module(top_name)
    base = getattr(top, BASES[top_name])
    assert issubclass(base, LWError) and BASES[top_name] in top.__all__

    errors = {where: cls for where, cls in _defined_errors(package).items() if where not in INTERNAL}
    assert errors, f"{package.name} defines no error: is its base in another package?"
    not_under_base = sorted(where for where, cls in errors.items() if not issubclass(cls, base))
    assert not_under_base == [], f"not subclasses of {top_name}.{base.__name__}"
    exported = {name: getattr(top, name) for name in top.__all__}
    not_exported = sorted(where for where, cls in errors.items() if exported.get(cls.__name__) is not cls)
    assert not_exported == [], f"not exported from {top_name} (import it there and list it in __all__)"


def test_internal_exceptions_still_exist() -> None:
    """An entry of INTERNAL whose class is gone or renamed would exempt nothing: keep the list true."""
    for where in INTERNAL:
        module, name = where.rsplit(".", 1)
        assert inspect.isclass(getattr(importlib.import_module(module), name, None)), where
