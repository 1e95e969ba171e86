"""The monorepo's shape: every package builds alone, lw-core installs without torch or typer, imports point one way."""

import ast
import importlib
import re
import subprocess
import sys
import tomllib
import venv
from importlib.metadata import packages_distributions, version
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p for p in [*ROOT.glob("packages/*"), *ROOT.glob("apps/*")] if (p / "pyproject.toml").exists())
LIBRARIES = {p.name.replace("-", "_"): p for p in ROOT.glob("packages/*")}


def _lw_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= {n.split(".")[0] for n in names if n.startswith("lw_")}
    return found


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_libraries_import_only_themselves_and_lw_core(name: str) -> None:
    """DESIGN.md: dependencies point one way; a package's tests run with only that package installed."""
    files = [*(LIBRARIES[name] / "src").rglob("*.py"), *(ROOT / "tests" / name).rglob("*.py")]
    offenders = {str(f.relative_to(ROOT)): _lw_imports(f) - {name, "lw_core"} for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


@pytest.mark.slow
def test_every_package_builds_a_wheel_and_lw_core_installs_without_torch(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), *map(str, PACKAGES)],
        check=True,
    )
    built = sorted(w.name.split("-")[0] for w in dist.glob("*.whl"))
    names = [tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"] for p in PACKAGES]
    assert built == sorted(n.replace("-", "_") for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    (core_wheel,) = dist.glob("lw_core-*.whl")
    subprocess.run([python, "-m", "pip", "install", "-q", str(core_wheel)], check=True)
    probe = """
import importlib.util, sys, lw_core
from lw_core.text import count_words_batch, count_words_series
assert lw_core.count_words("two words 两字") == 4
assert count_words_batch(["two words", "两字"]) == [2, 2]  # without polars: the plain loop
try:
    count_words_series(None)
except ImportError as err:
    assert "lw-core[fast]" in str(err), err  # names the extra to install
else:
    raise AssertionError("count_words_series ran without polars")
assert "torch" not in sys.modules and importlib.util.find_spec("torch") is None
try:
    import lw_core.cli
except ImportError as err:
    assert "lw-core[cli]" in str(err), err  # the command-line glue names its extra
else:
    raise AssertionError("lw_core.cli imported without typer and rich")
assert "typer" not in sys.modules and "rich" not in sys.modules
print("ok")
"""
    out = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "ok"


#: Declared dependencies a package needs without importing them, and why.
NOT_IMPORTED = {
    "lw-data": {"pyarrow": "polars needs it for to_arrow, whose buffers the numba kernels read"},
    "lw-train": {"accelerate": "transformers' Trainer needs it at run time"},
    "lw-reproduce": {"pyyaml": "lw_core.config reads a .yaml profile or --config with it"},
}


def _project(package: Path) -> dict[str, Any]:
    return tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _dist(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_distributions(package: Path) -> dict[str, set[str]]:
    """Third-party distributions the package's code imports (at any depth, lazily too) -> the files importing them."""
    by_module = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (package / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names):
                for dist in by_module.get(top, [top.replace("_", "-")]):
                    found.setdefault(dist.lower().replace("_", "-"), set()).add(path.name)
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_dependencies_match_imports(package: Path) -> None:
    """Every import is declared (required, or in the extra that needs it) and every requirement is imported."""
    project = _project(package)
    required = {_dist(r) for r in project["dependencies"]}
    extras = {_dist(r) for rs in project.get("optional-dependencies", {}).values() for r in rs}
    imported = _imported_distributions(package)
    imported.pop(project["name"], None)
    undeclared = {dist: files for dist, files in imported.items() if dist not in required | extras}
    assert undeclared == {}, "imported but not declared in pyproject.toml"
    unused = required - set(imported) - set(NOT_IMPORTED.get(project["name"], {}))
    assert unused == set(), "declared but never imported (say why in NOT_IMPORTED, or remove it)"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_each_version_is_written_once(package: Path) -> None:
    """The version is static in pyproject.toml; ``__version__`` reads the installed metadata, never a literal."""
    project = _project(package)
    assert "version" in project and "version" not in project.get("dynamic", [])
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (package / "src").rglob("*.py"))
    assert not re.search(r"__version__\s*=\s*['\"]", sources)
    module = importlib.import_module(project["name"].replace("-", "_"))
    assert module.__version__ == project["version"] == version(project["name"])


def _backend_changes(tree: ast.AST) -> list[int]:
    """Lines that import pyplot or call ``matplotlib.use`` / ``switch_backend`` (under any usual alias)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "matplotlib.pyplot" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module in ("matplotlib", "matplotlib.pyplot"):
            if node.module == "matplotlib.pyplot" or any(a.name == "pyplot" for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            if node.func.attr in ("use", "switch_backend") and owner in ("matplotlib", "mpl", "plt", "pyplot"):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_library_code_touches_the_global_matplotlib_backend(package: Path) -> None:
    """``matplotlib.use`` or pyplot in a library changes the caller's plotting (a notebook loses inline plots)."""
    offenders = {
        path.name: lines
        for path in (package / "src").rglob("*.py")
        if (lines := _backend_changes(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert offenders == {}
