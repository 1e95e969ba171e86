"""The examples in every package's docstrings run and print what they show, and public modules carry some.

The rule: a public module (no leading underscore, not a package ``__init__``, not a ``cli``) that defines a name its
package exports must hold at least one docstring example, because an example that runs is the one piece of
documentation that cannot go stale. Modules without one yet are listed in ``WITHOUT_EXAMPLES``: debt, to shrink.
A new module cannot join the list silently, and the list must stay true (a listed module that gains an example, or
is gone, fails the last test until the list is updated).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ("lw_core", "lw_agentwrite", "lw_data", "lw_train", "lw_bench", "lw_serve", "lw_reproduce")

#: Public modules that define exported names but have no example yet (add one, then remove the name here).
WITHOUT_EXAMPLES: frozenset[str] = frozenset(
    {
        "lw_data.errors",
        "lw_data.instructions",
        "lw_data.stats",
        "lw_serve.backends",
        "lw_serve.engine",
        "lw_serve.errors",
        "lw_serve.models",
        "lw_train.attention",
        "lw_train.dpo",
        "lw_train.errors",
        "lw_train.loss",
    }
)


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}.")]
    return sorted(names)


def _needs_examples(module: ModuleType) -> bool:
    """Public, not a package or CLI, and the home of at least one name its package exports."""
    package, _, leaf = module.__name__.rpartition(".")
    if not package or leaf.startswith("_") or leaf == "cli":
        return False
    root = importlib.import_module(package.split(".")[0])
    return any(getattr(getattr(root, name, None), "__module__", None) == module.__name__ for name in root.__all__)


def _example_count(module: ModuleType) -> int:
    """Examples that run (``# doctest: +SKIP`` ones do not count)."""
    tests = doctest.DocTestFinder().find(module)
    return sum(not example.options.get(doctest.SKIP) for test in tests for example in test.examples)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if _needs_examples(module) and name not in WITHOUT_EXAMPLES:
        assert result.attempted > 0, f"{name} defines exported names but has no docstring example: add one"


def test_the_list_of_modules_without_examples_is_true() -> None:
    stale = sorted(
        name for name in WITHOUT_EXAMPLES if name not in _modules() or _example_count(importlib.import_module(name)) > 0
    )
    assert stale == [], "these modules now have examples (or are gone): remove them from WITHOUT_EXAMPLES"
