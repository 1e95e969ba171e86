"""The train stage launched on 2 CPU processes (accelerate launch, gloo on the loopback device, a free port): it
trains, a SIGKILLed pipeline leaves no training process behind, and running the stage again resumes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = ["river", "stone", "cloud", "field", "lamp", "bridge", "long", "careful", "answers", "about"]


def _tiny_model(folder: Path, tiny_llama) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHATML
    model_folder = folder / "tiny-model"
    tiny_llama(vocab_size=len(tokenizer)).save_pretrained(model_folder)
    tokenizer.save_pretrained(model_folder)
    return model_folder


def _stage(config: Path, runs: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    code = "import sys; from lw_reproduce.cli import app; sys.exit(app())"
    command = [sys.executable, "-c", code, "reproduce", "--config", str(config), "--runs", str(runs)]
    command += ["--from", "train", "--until", "train"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _training_processes(marker: str) -> list[int]:
    """Live processes whose command line names ``marker`` (the launched run's config file)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_the_train_stage_launches_two_processes_survives_a_kill_and_resumes(tmp_path, tiny_llama):
    model = _tiny_model(tmp_path, tiny_llama)
    runs, name = tmp_path / "runs", "launched"
    data = runs / name / "data"
    data.mkdir(parents=True)
    rng = random.Random(0)
    with (data / "train.jsonl").open("w") as out:
        for i in range(16):
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            chat = [{"role": "user", "content": f"Write note {i}."}, {"role": "assistant", "content": answer}]
            out.write(json.dumps({"messages": chat}) + "\n")
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "{name}"\n[student]\nmodel = "{model}"\n[train]\nprocesses = 2\n'
        "[train.settings]\nmax_steps = 40\nmax_tokens = 384\nsave_steps = 2\nlearning_rate = 3e-3\nthreads = 1\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "LW_HOME": str(tmp_path / "lw_home")}
    checkpoints = runs / name / "train" / "model" / "checkpoints"
    launched_config = str(runs / name / "train" / "model" / "launch" / "sft-config.json")

    first = _stage(config, runs, env)
    deadline = time.monotonic() + 600
    while not (checkpoints / "checkpoint-2" / "lw-complete").exists() and first.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.01)
    assert first.poll() is None, (first.stdout.read() if first.stdout else b"").decode()[-4000:]
    assert len(_training_processes(launched_config)) >= 2, "two ranks (and their launcher) should be running"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 60
    while _training_processes(launched_config):  # the launcher got SIGTERM when its parent died, and its ranks too
        assert time.monotonic() < deadline, f"orphans of the killed stage: {_training_processes(launched_config)}"
        time.sleep(0.2)
    assert not (runs / name / "train" / "done").exists()

    second = _stage(config, runs, env)
    output = (second.communicate(timeout=600)[0] or b"").decode()
    assert second.returncode == 0, output[-4000:]
    summary = json.loads((runs / name / "train" / "done").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 40
    assert summary["resumed_from"] is not None and int(summary["resumed_from"].split("-")[1]) >= 2
    assert (runs / name / "train" / "model" / "model.safetensors").is_file()
    assert "accelerate.yaml" in {p.name for p in (runs / name / "train" / "model" / "launch").iterdir()}
