"""Run folders: ``runs/<name>/manifest.json``, one subfolder per stage, a ``done`` marker per finished stage.

A killed run is resumed by running the same command again: finished stages are skipped, the stage that was
interrupted resumes from its append-only records. A run folder made with another configuration is refused
rather than silently mixed; ``fresh`` starts from nothing, moving the old folder aside (never deleting results).
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lw_core import atomic_write

from lw_reproduce.config import ReproduceConfig
from lw_reproduce.errors import RunDirError

log = logging.getLogger(__name__)
PACKAGES = ("lw-core", "lw-agentwrite", "lw-data", "lw-train", "lw-bench", "lw-serve", "lw-reproduce")


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
        if fresh and root.exists():
            aside = root.with_name(f"{root.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            root.rename(aside)
            log.warning("--fresh: moved the old run folder %s to %s", root, aside)
        elif manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("config_hash") != config.digest():
                raise RunDirError(
                    f"{root} was made with another configuration (hash {old.get('config_hash')} != "
                    f"{config.digest()}): pick a new --name, or pass --fresh to start over (the old folder is "
                    "moved aside, not deleted)"
                )
        run = cls(root, config)
        run.write_manifest()
        return run

    @classmethod
    def existing(cls, runs: Path, name: str) -> RunDir:
        """An existing run folder, with the configuration it was made with (for `lw reproduce status`)."""
        manifest = runs / name / "manifest.json"
        if not manifest.exists():
            raise RunDirError(f"{runs / name} is not a run folder (no manifest.json)")
        return cls(runs / name, ReproduceConfig.model_validate(json.loads(manifest.read_text())["config"]))

    @staticmethod
    def fork(runs: Path, source: str, name: str, stages: Sequence[str], records: Sequence[str] = ()) -> Path:
        """Start run folder ``name`` from run ``source``: its finished ``stages`` copied whole (skipped by the new
        run), and the records of ``records`` stages (every file but the ``done`` marker and trained models, so the
        new run resumes from them without spending a finished call). Nothing else is copied: the new run writes its
        own manifest with its own configuration, which must leave the copied stages' settings as they were.
        """
        origin, target = runs / source, runs / name
        if not (origin / "manifest.json").exists():
            raise RunDirError(f"{origin} is not a run folder (no manifest.json)")
        if target.exists():
            raise RunDirError(f"{target} exists already: fork into a new name")
        unfinished = [s for s in stages if not (origin / s / "done").exists()]
        if unfinished:
            raise RunDirError(f"{origin}: stage(s) {', '.join(unfinished)} not finished; copy their records instead")
        missing = [s for s in records if not (origin / s).is_dir()]
        if missing:
            raise RunDirError(f"{origin}: no folder for stage(s) {', '.join(missing)}")
        for stage in stages:
            shutil.copytree(origin / stage, target / stage)
        for stage in records:
            shutil.copytree(origin / stage, target / stage, ignore=shutil.ignore_patterns("done", "model"))
        return target

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
