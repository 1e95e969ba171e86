"""The monorepo's shape: every package builds alone, lw-core installs without torch, and imports point one way."""

import ast
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

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
print("ok")
"""
    out = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "ok"
