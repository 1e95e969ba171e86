"""The released code's settings as SFT options: its bin order (sort_and_group.py, dataset.py, trainer.py), its
prompt formats carried into the saved model, its warm-up ratio on every transformers, GLM-4's remote-code opt-in."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import transformers
from lw_train import ConfigError, SFTConfig, train_sft
from lw_train._run import common_arguments, warmup
from lw_train.sft import _bins
from lw_train.tokenization import CHAT_TEMPLATES


def _config(tmp_path: Path, **settings) -> SFTConfig:
    values = {"model": "m", "data": "d.jsonl", "output_dir": str(tmp_path / "out"), "max_tokens": 10, **settings}
    return SFTConfig.validated(values)


def released_sort_and_group(lengths: list[int], max_length: int) -> list[list[int]]:
    """train/sort_and_group.py lines 43-72 on sample lengths: which samples each written pack holds."""
    packs, current, curr_idx, idx = [], [], 0, 0
    while idx < len(lengths):
        if curr_idx + lengths[idx] > max_length:  # full, start new pack
            packs.append(current)
            current, curr_idx = [], 0
        else:  # pack in
            current.append(idx)
            curr_idx += lengths[idx]
            idx += 1
    return packs  # the pack open when the loop ends is never appended


def test_the_original_order_is_the_released_packing_with_the_last_pack_dropped(tmp_path):
    lengths = [4, 3, 5, 2, 6, 1, 1, 7, 2, 3, 8, 2]
    samples = SimpleNamespace(lengths=lengths)
    config = _config(tmp_path, packing="nextfit", order="original")
    bins, dropped = _bins(config, samples, list(range(len(lengths))), 1, last_dropped=True)  # type: ignore[arg-type]
    shuffled = [i for b in bins for i in b]  # next-fit runs over the input after its one seeded shuffle
    order = list(range(len(lengths)))
    np.random.default_rng([config.seed, 2]).shuffle(order)
    expected = [[order[i] for i in pack] for pack in released_sort_and_group([lengths[i] for i in order], 10)]
    assert bins == expected and shuffled == order[: len(shuffled)]
    assert dropped == len(lengths) - len(shuffled) > 0
    # dataset.py lines 58-59: a multiple of the GPU count (here: of the bins one optimizer step takes)
    by_three, dropped_three = _bins(config, samples, list(range(len(lengths))), 3, last_dropped=True)  # type: ignore[arg-type]
    assert by_three == expected[: len(expected) // 3 * 3] and dropped_three >= dropped
    grouped, none_dropped = _bins(_config(tmp_path, packing="nextfit"), samples, order, 3, last_dropped=True)  # type: ignore[arg-type]
    assert none_dropped == 0 and sorted(i for b in grouped for i in b) == sorted(order)


def test_the_original_order_refuses_data_that_leaves_no_bin(tmp_path):
    config = _config(tmp_path, packing="nextfit", order="original")
    with pytest.raises(ConfigError, match=r"field 'order'.*leaves none of the 1 bins"):
        _bins(config, SimpleNamespace(lengths=[3, 4]), [0, 1], 1, last_dropped=True)  # type: ignore[arg-type]


def test_the_warmup_ratio_is_passed_as_a_ratio_on_every_transformers(tmp_path, monkeypatch):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **warmup(0.03))
    assert args.get_warmup_steps(1000) == 30
    # transformers < 5 (lw-train allows >= 4.56) has a warmup_ratio field, and warmup_steps counts steps there
    fields = transformers.TrainingArguments.__dataclass_fields__
    monkeypatch.setitem(fields, "warmup_ratio", dataclasses.field(default=0.0))
    before_5 = common_arguments(_config(tmp_path, warmup_ratio=0.03))
    assert (before_5["warmup_ratio"], before_5["warmup_steps"]) == (0.03, 0)  # 0.03 steps would be no warm-up


def test_a_model_that_needs_its_own_code_names_the_opt_in(tmp_path):
    folder = tmp_path / "glm-4-9b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "chatglm",
        "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                     "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"},
    }))  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "ChatGLM4Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", None]},
    }))  # fmt: skip
    config = _config(tmp_path, model=str(folder), prompt_format="glm4")
    with pytest.raises(ConfigError, match=r"field 'trust_remote_code'.*set trust_remote_code = true"):
        train_sft(config, progress=False)


def _llama_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
    )
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tokenizer.bos_token_id)]
    )
    return tokenizer


def test_paper_settings_train_and_the_saved_model_is_prompted_in_its_training_format(tmp_path, tiny_llama, monkeypatch):
    """nextfit + original order + longwriter loss + the family's format: the paper recipe's data path, tiny."""
    from transformers import AutoTokenizer

    monkeypatch.setenv("LW_HOME", str(tmp_path / "lw_home"))
    tokenizer = _llama_tokenizer()
    model_folder = tmp_path / "tiny-llama"
    tiny_llama(vocab_size=len(tokenizer)).save_pretrained(model_folder)
    tokenizer.save_pretrained(model_folder)
    data = tmp_path / "sft.jsonl"
    with data.open("w") as out:
        for i in range(12):
            answer = " ".join(["river stone"] * (3 + 5 * (i % 4)))
            chat = [{"role": "user", "content": f"Write note {i}."}, {"role": "assistant", "content": answer}]
            out.write(json.dumps({"messages": chat}) + "\n")
    config = _config(
        tmp_path, model=str(model_folder), data=str(data), max_tokens=256, epochs=2, learning_rate=3e-3,
        packing="nextfit", order="original", loss_reduction="longwriter", prompt_format="longwriter",
    )  # fmt: skip
    summary = train_sft(config, progress=False).summary
    assert (summary["prompt_format"], summary["order"], summary["processes"]) == ("llama-inst", "original", 1)
    assert summary["dropped_with_last_bins"] > 0 and summary["samples"] == 12 - summary["dropped_with_last_bins"]
    assert summary["steps"] == 2 * summary["bins"]
    saved = AutoTokenizer.from_pretrained(config.output_dir)
    assert saved.chat_template == CHAT_TEMPLATES["llama-inst"]
    prompt = [{"role": "user", "content": "Write a poem."}]
    served = saved.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
    assert served == tokenizer("[INST]Write a poem.[/INST]")["input_ids"]  # evaluation/pred.py lines 34-35
