"""Which model lw-train loads: a GGUF is dequantized once per content into ``$LW_HOME/models``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lw_train import models as models_mod
from lw_train.models import resolve_model


def test_gguf_is_converted_once_and_again_when_retrained_at_the_same_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LW_HOME", str(tmp_path / "lw_home"))
    calls: list[bytes] = []

    def fake_convert(gguf: Path, folder: Path) -> None:
        calls.append(gguf.read_bytes())
        (folder / "config.json").write_text("{}")

    monkeypatch.setattr(models_mod, "_convert_into", fake_convert)
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF-v1")
    folder = resolve_model(str(gguf))
    assert folder == str(tmp_path / "lw_home" / "models" / "mine") and resolve_model(str(gguf)) == folder
    mtime = gguf.stat().st_mtime_ns
    gguf.write_bytes(b"GGUF-v2")
    os.utime(gguf, ns=(mtime, mtime + 1))  # a coarse clock may not move on its own
    assert resolve_model(str(gguf)) == folder
    assert calls == [b"GGUF-v1", b"GGUF-v2"]
