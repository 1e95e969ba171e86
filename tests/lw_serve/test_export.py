"""HF folder → GGUF on tiny random models: what transformers reads back, bad input, the content-keyed cache."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from lw_serve import ConversionError, ResolvedModel, export_gguf
from lw_serve import export as export_mod
from lw_serve.cli import app
from lw_serve.export import cached_export, can_export
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")
TinyFactory = Callable[..., Path]
PROMPT = "It's 2024: we'll write 12345 words, naïve café 東京 🙂\nline two\t  spaced"


def _logits(folder: Path, ids: list[int], gguf_file: str | None = None) -> object:
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kwargs).eval()
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0]


def _ids(folder: Path) -> list[int]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(str(folder))(PROMPT).input_ids)


@pytest.mark.parametrize(
    ("arch", "tokenizer", "tied"),
    [("llama", "gpt2", True), ("llama", "llama3", False), ("mistral", "bytefallback", False), ("qwen2", "qwen2", True)],
)
def test_f32_export_loads_back_in_transformers_with_the_same_logits(
    tiny_folder: TinyFactory, arch: str, tokenizer: str, tied: bool
) -> None:
    folder = tiny_folder(arch=arch, tokenizer=tokenizer, tied=tied)
    out = export_gguf(folder, folder.parent / "model.gguf", "f32")
    ids = _ids(folder)
    expected, actual = _logits(folder, ids), _logits(out.parent, ids, gguf_file=out.name)
    assert float((expected - actual).abs().max()) <= 1e-4  # type: ignore[operator]


def test_rotary_permutation_is_what_makes_llama_load_back(
    tiny_folder: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers undoes llama.cpp's rotary layout on load: without the permutation the logits are wrong."""
    folder = tiny_folder(arch="llama")
    monkeypatch.setattr(export_mod, "rotary_permute", lambda weight, n_head: weight)
    out = export_gguf(folder, folder.parent / "unpermuted.gguf", "f32")
    ids = _ids(folder)
    assert float((_logits(folder, ids) - _logits(out.parent, ids, gguf_file=out.name)).abs().max()) > 1e-2  # type: ignore[operator]


@pytest.mark.parametrize(("outtype", "tolerance"), [("f16", 0.01), ("bf16", 0.05), ("q8_0", 0.15)])
def test_smaller_outtypes_store_weights_in_that_type(tiny_folder: TinyFactory, outtype: str, tolerance: float) -> None:
    """Rounded weights: logits move a little (relative to their range), never a lot."""
    folder = tiny_folder(arch="llama")
    out = export_gguf(folder, folder.parent / f"m.{outtype}.gguf", outtype)
    reader = gguf.GGUFReader(str(out))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == outtype.upper()
    assert types["blk.0.attn_norm.weight"] == "F32", "norms stay f32"
    ids = _ids(folder)
    expected = _logits(folder, ids)
    diff = float((expected - _logits(out.parent, ids, gguf_file=out.name)).abs().max())  # type: ignore[operator]
    assert 0 < diff < tolerance * float(expected.abs().max())  # type: ignore[attr-defined]


def test_tokenizer_metadata(tiny_folder: TinyFactory) -> None:
    folder = tiny_folder(tokenizer="smollm")
    reader = gguf.GGUFReader(str(export_gguf(folder, folder.parent / "m.gguf", "f32")))
    field = {name: value.contents() for name, value in reader.fields.items() if not name.startswith("tokenizer.ggml.t")}
    assert field["general.architecture"] == "llama"
    assert (field["tokenizer.ggml.model"], field["tokenizer.ggml.pre"]) == ("gpt2", "smollm")
    assert field["tokenizer.chat_template"].startswith("{% for m in messages %}")
    assert (field["tokenizer.ggml.bos_token_id"], field["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert field["tokenizer.ggml.add_bos_token"] is False, "transformers adds no BOS for this tokenizer"
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert types[:3] == [gguf.TokenType.CONTROL] * 3 and types[3] == gguf.TokenType.NORMAL


@pytest.mark.parametrize(("kind", "pre"), [("gpt2", "gpt-2"), ("llama3", "llama-bpe"), ("qwen2", "qwen2")])
def test_pre_tokenizer_is_recognised(tiny_folder: TinyFactory, kind: str, pre: str) -> None:
    folder = tiny_folder(tokenizer=kind)
    reader = gguf.GGUFReader(str(export_gguf(folder, folder.parent / "m.gguf", "f32")))
    assert reader.fields["tokenizer.ggml.pre"].contents() == pre


def test_unknown_pre_tokenizer_is_refused_not_guessed(tiny_folder: TinyFactory) -> None:
    folder = tiny_folder(tokenizer="llama3")
    data = json.loads((folder / "tokenizer.json").read_text())
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\s+"
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ConversionError, match=r"tokenizer\.json: field 'pre_tokenizer'.*Llama 3 and Qwen2"):
        export_gguf(folder, folder.parent / "m.gguf")
    assert not (folder.parent / "m.gguf").exists()


# -- bad input ----------------------------------------------------------------------------------


def test_unsupported_architecture_names_the_supported_ones(tiny_folder: TinyFactory) -> None:
    folder = tiny_folder()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"architectures": ["GPTNeoXForCausalLM"]}))
    with pytest.raises(ConversionError, match=r"GPTNeoXForCausalLM.*LlamaForCausalLM, MistralForCausalLM, Qwen2"):
        export_gguf(folder, folder.parent / "m.gguf")
    assert not can_export(folder)


def test_folder_without_weights_or_tokenizer(tiny_folder: TinyFactory) -> None:
    folder = tiny_folder()
    (folder / "model.safetensors").rename(folder.parent / "weights.bak")
    with pytest.raises(ConversionError, match=r"has no weights \(model\.safetensors"):
        export_gguf(folder, folder.parent / "m.gguf")
    (folder.parent / "weights.bak").rename(folder / "model.safetensors")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ConversionError, match=r"no tokenizer files \(tokenizer\.json\)"):
        export_gguf(folder, folder.parent / "m.gguf")
    with pytest.raises(ConversionError, match=r"config\.json is missing"):
        export_gguf(folder.parent, folder.parent / "m.gguf")


def test_broken_config_names_file_line_and_field(tiny_folder: TinyFactory) -> None:
    folder = tiny_folder()
    config = json.loads((folder / "config.json").read_text())
    del config["num_attention_heads"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"config\.json: field 'num_attention_heads' is missing"):
        export_gguf(folder, folder.parent / "m.gguf")
    (folder / "config.json").write_text('{\n  "architectures": ["LlamaForCausalLM"],\n  oops\n}')
    with pytest.raises(ConversionError, match=r"config\.json:3: not valid JSON"):
        export_gguf(folder, folder.parent / "m.gguf")


def test_unknown_outtype_and_existing_output(tiny_folder: TinyFactory) -> None:
    folder = tiny_folder()
    with pytest.raises(ConversionError, match="unknown outtype 'q4_k': choose one of f32, f16, bf16, q8_0"):
        export_gguf(folder, folder.parent / "m.gguf", "q4_k")
    existing = folder.parent / "m.gguf"
    existing.write_bytes(b"keep me")
    with pytest.raises(ConversionError, match=r"already exists.*--force"):
        export_gguf(folder, existing)
    assert existing.read_bytes() == b"keep me"
    export_gguf(folder, existing, force=True)
    assert existing.read_bytes()[:4] == b"GGUF"


def test_failed_export_leaves_no_partial_file(tiny_folder: TinyFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_folder()
    before = set(folder.parent.iterdir())
    calls = []

    def fail_on_third(model: object, name: str, data: object) -> object:
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived halfway through the tensors
        return data

    monkeypatch.setattr(export_mod, "_transform", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        export_gguf(folder, folder.parent / "m.gguf")
    assert set(folder.parent.iterdir()) == before


def test_sharded_safetensors_and_lm_head(tiny_folder: TinyFactory) -> None:
    from transformers import AutoModelForCausalLM

    folder = tiny_folder(tied=False)
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    sharded = folder.parent / "sharded"
    model.save_pretrained(sharded, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (folder / name).exists():
            shutil.copy(folder / name, sharded / name)
    assert (sharded / "model.safetensors.index.json").is_file()
    out = export_gguf(sharded, folder.parent / "m.gguf", "f32")
    names = {t.name for t in gguf.GGUFReader(str(out)).tensors}
    assert "output.weight" in names and "token_embd.weight" in names
    ids = _ids(folder)
    assert float((_logits(folder, ids) - _logits(out.parent, ids, gguf_file=out.name)).abs().max()) <= 1e-4  # type: ignore[operator]


# -- the cache Server uses ----------------------------------------------------------------------


def test_cached_export_is_keyed_by_content(tiny_folder: TinyFactory, tmp_path: Path) -> None:
    folder = tiny_folder()
    cache = tmp_path / "cache"
    first = cached_export(folder, "f32", cache)
    stamp = first.stat().st_mtime_ns
    assert cached_export(folder, "f32", cache) == first and first.stat().st_mtime_ns == stamp, "reused"
    assert cached_export(folder, "f16", cache) != first, "one file per outtype"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    with torch.no_grad():
        model.model.norm.weight.add_(0.5)  # "trained" in place: same path, new content
    model.save_pretrained(folder)
    retrained = cached_export(folder, "f32", cache)
    assert retrained != first and retrained.name.startswith(folder.name)
    assert len(list(cache.glob("*.gguf"))) == 3, "old f32, old f16, new f32"
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_concurrent_cached_exports_write_once(tiny_folder: TinyFactory, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tiny_folder()
    writes = []
    real = export_mod.export_gguf
    monkeypatch.setattr(export_mod, "export_gguf", lambda *a, **k: (writes.append(a), real(*a, **k))[1])
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cached_export(folder, "f32", tmp_path))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert len(writes) == 1, "the lock makes the others wait and reuse the file"


def test_resolved_folder_exports_into_lw_home(tiny_folder: TinyFactory, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    folder = tiny_folder()
    path = ResolvedModel("tiny", hf=str(folder)).gguf_file("f32")
    assert path.parent == tmp_path / "home" / "gguf" and path.read_bytes()[:4] == b"GGUF"
    with pytest.raises(ConversionError, match=r"hub id.*download it first"):
        ResolvedModel("x", hf="org/model").gguf_file()


# -- command line -------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_export_gguf(tiny_folder: TinyFactory) -> None:
    folder = tiny_folder()
    out = folder.parent / "cli.gguf"
    result = runner.invoke(app, ["export-gguf", str(folder), "--out", str(out), "--outtype", "q8_0"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.read_bytes()[:4] == b"GGUF"
    again = runner.invoke(app, ["export-gguf", str(folder), "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output
    assert runner.invoke(app, ["export-gguf", str(folder), "--out", str(out), "--force"]).exit_code == 0
    bad = runner.invoke(app, ["export-gguf", str(folder), "--out", str(out), "--outtype", "q4"])
    assert bad.exit_code == 2 and "q4" in bad.output
    missing = runner.invoke(app, ["export-gguf", str(folder.parent / "nope"), "--out", str(out), "--force"])
    assert missing.exit_code == 1 and "is not a folder" in missing.output
    assert os.path.getsize(out) > 0
