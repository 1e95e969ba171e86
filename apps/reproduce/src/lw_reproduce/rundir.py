"""Run folders: ``runs/<name>/manifest.json``, one subfolder per stage, a ``done`` marker per finished stage.

A killed run is resumed by running the same command again: finished stages are skipped, the stage that was
interrupted resumes from its append-only records. A run folder made with another configuration is refused
rather than silently mixed.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lw_core import LWError, atomic_write

from lw_reproduce.config import ReproduceConfig

PACKAGES = ("lw-core", "lw-agentwrite", "lw-data", "lw-train", "lw-bench", "lw-serve", "lw-reproduce")


class RunDirError(LWError):
    """The run folder belongs to another configuration."""


def _versions() -> dict[str, str]:
    found = {}
    for name in (*PACKAGES, "torch", "transformers", "polars"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class RunDir:
    root: Path
    config: ReproduceConfig

    @classmethod
    def open(cls, runs: Path, config: ReproduceConfig, *, fresh: bool = False) -> RunDir:
        root = runs / config.name
        manifest = root / "manifest.json"
        if manifest.exists() and not fresh:
            old = json.loads(manifest.read_text())
            if old.get("config_hash") != config.digest():
                raise RunDirError(
                    f"{root} was made with another configuration (hash {old.get('config_hash')} != "
                    f"{config.digest()}): pick a new --name, or pass --fresh to start it over"
                )
        elif fresh and root.exists():
            for marker in root.glob("*/done"):
                marker.unlink()
        run = cls(root, config)
        run.write_manifest()
        return run

    def write_manifest(self, **extra: Any) -> None:
        path = self.root / "manifest.json"
        current = json.loads(path.read_text()) if path.exists() else {"created": time.time()}
        current.update(
            config=self.config.model_dump(mode="json"),
            config_hash=self.config.digest(),
            versions=_versions(),
            python=platform.python_version(),
            **extra,
        )
        atomic_write(path, json.dumps(current, indent=2, ensure_ascii=False))

    def stage(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def is_done(self, name: str) -> bool:
        return (self.root / name / "done").exists()

    def mark_done(self, name: str, summary: dict[str, Any]) -> None:
        atomic_write(self.stage(name) / "done", json.dumps(summary, indent=2, ensure_ascii=False, default=str))

    def summary(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.root / name / "done").read_text())
        return result
