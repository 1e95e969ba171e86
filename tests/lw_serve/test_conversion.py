"""The converted embedded model is a normal HF folder with the GGUF model's behaviour (slow: loads the model)."""

from __future__ import annotations

import pytest
from lw_serve import EMBEDDED_MODEL, resolve_model

pytestmark = pytest.mark.slow


def test_converted_folder_generates_the_same_greedy_tokens_as_the_gguf() -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = resolve_model(EMBEDDED_MODEL)
    assert model.gguf is not None
    folder = model.hf_folder()

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    converted = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert getattr(converted.config, "quantization_config", None) is None, "a plain, trainable model"
    original = AutoModelForCausalLM.from_pretrained(str(model.gguf.parent), gguf_file=model.gguf.name).eval()

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name three colours."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        expected = original.generate(**prompt, max_new_tokens=24, do_sample=False)
        actual = converted.generate(**prompt, max_new_tokens=24, do_sample=False)
    assert actual.tolist() == expected.tolist()
    assert actual.shape[1] > prompt["input_ids"].shape[1]
