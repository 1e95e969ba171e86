"""The released LongWriter models' prompt formats: training tokens as THUDM/LongWriter@3fcfdff builds them
(train/pre_tokenize_llama3.py, pre_tokenize_glm4.py), inference prompts as its evaluation/pred.py renders them."""

from __future__ import annotations

import numpy as np
import pytest
from jinja2 import Template
from lw_train import TokenizationError, tokenize_chats
from lw_train.tokenization import CHAT_TEMPLATES, resolve_prompt_format

IGNORE = -100
TWO_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a river."},
    {"role": "assistant", "content": "The Nile."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "The Rhine."},
]
GLM_SPECIALS = ["[gMASK]", "<sop>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]


def _byte_tokenizer(**special: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


@pytest.fixture
def llama_tokenizer():
    """Bytes plus Llama-3's BOS/EOS, and a post-processor that adds BOS to every call, as Llama-3's tokenizer.json."""
    from tokenizers import processors

    tokenizer = _byte_tokenizer(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    return tokenizer


@pytest.fixture
def glm_tokenizer():
    tokenizer = _byte_tokenizer(eos_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in GLM_SPECIALS if t != "<|endoftext|>"]})
    return tokenizer


def released_llama_build_input(conversations, tokenizer):
    """pre_tokenize_llama3.py lines 38-58, with torch replaced by lists (MAX length handling aside)."""
    inputs, starts, ends = [tokenizer.bos_token_id], [], []
    for item in conversations:
        content, role = item["content"], item["role"]
        if role == "system":
            cur_inputs = tokenizer(f"<<SYS>>\n{content}\n<</SYS>>\n\n")["input_ids"]
        elif role == "user":
            cur_inputs = tokenizer(f"[INST]{content}[/INST]")["input_ids"]
        else:
            starts.append(len(inputs))
            cur_inputs = tokenizer(content)["input_ids"]
            ends.append(len(inputs) + len(cur_inputs))
        inputs = inputs + cur_inputs
    inputs = [*inputs, tokenizer.eos_token_id]
    labels = [IGNORE] * len(inputs)
    for start, end in zip(starts, ends, strict=True):
        labels[start:end] = inputs[start:end]
        labels[end] = tokenizer.eos_token_id
    return inputs, labels


def released_glm_build_input(conversations, tokenizer):
    """pre_tokenize_glm4.py lines 37-53 with tokenization_chatglm.py's build_single_message (lines 156-161) and the
    [gMASK]<sop> prefix that batch_encode_plus adds (get_prefix_tokens, line 152)."""

    def get_command(token):
        return tokenizer.convert_tokens_to_ids(token)

    def build_single_message(role, metadata, message):
        role_tokens = [get_command(f"<|{role}|>")] + tokenizer(f"{metadata}\n", add_special_tokens=False)["input_ids"]
        message_tokens = tokenizer(message, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return role_tokens + message_tokens

    input_ids, starts, ends = [], [], []
    for item in conversations:
        content, role = item["content"], item["role"]
        if role == "assistant" and content != "":
            starts.append(len(input_ids))
        input_ids.extend(build_single_message(role, item.get("metadata", ""), content))
        if role == "assistant" and content != "":
            ends.append(len(input_ids))
    input_ids.append(get_command("<|endoftext|>"))
    inputs = [get_command("[gMASK]"), get_command("<sop>"), *input_ids]
    labels = [IGNORE] * len(inputs)
    for start, end in zip(starts, ends, strict=True):
        labels[start + 3 : end + 3] = inputs[start + 3 : end + 3]
    return inputs, labels


def _only(samples):
    assert len(samples) == 1
    return samples[0]["input_ids"].tolist(), samples[0]["labels"].tolist()


def test_llama_inst_renders_the_released_string_and_tokens_for_a_two_turn_chat(llama_tokenizer):
    text = Template(CHAT_TEMPLATES["llama-inst"]).render(messages=TWO_TURNS, bos_token="<|begin_of_text|>")
    assert text == (
        "<|begin_of_text|><<SYS>>\nBe brief.\n<</SYS>>\n\n[INST]Name a river.[/INST]The Nile.[INST]Another?[/INST]"
        "The Rhine."
    )  # the model card's "<<SYS>>\n{system}\n<</SYS>>\n\n[INST]{query1}[/INST]{response1}[INST]{query2}[/INST]..."
    samples = tokenize_chats([TWO_TURNS], llama_tokenizer, prompt_format="llama-inst", cache=False)
    ids, labels = _only(samples)
    assert (ids, labels) == released_llama_build_input(TWO_TURNS, llama_tokenizer)
    # what that means with a Llama-3 tokenizer: a BOS before every message, EOS labels after every answer
    bos, eos = llama_tokenizer.bos_token_id, llama_tokenizer.eos_token_id
    assert ids[:2] == [bos, bos] and ids.count(bos) == 1 + len(TWO_TURNS) and ids[-1] == eos
    assert labels.count(eos) == 2 and labels[-1] == eos
    first_answer = llama_tokenizer.decode([t for t in labels[: labels.index(eos)] if t != IGNORE])
    assert first_answer == "<|begin_of_text|>The Nile."


def test_glm4_tokens_are_the_released_ones_and_train_the_token_after_each_answer(glm_tokenizer):
    samples = tokenize_chats([TWO_TURNS], glm_tokenizer, prompt_format="glm4", cache=False)
    ids, labels = _only(samples)
    assert (ids, labels) == released_glm_build_input(TWO_TURNS, glm_tokenizer)
    trained = glm_tokenizer.decode([t for t in labels if t != IGNORE])
    assert trained == "\nThe Nile.<|user|>\nThe Rhine.<|endoftext|>"


def test_special_token_text_inside_a_glm4_message_stays_text(glm_tokenizer):
    chat = [{"role": "user", "content": "say <|user|>"}, {"role": "assistant", "content": "ok"}]
    ids, _ = _only(tokenize_chats([chat], glm_tokenizer, prompt_format="glm4", cache=False))
    assert ids.count(glm_tokenizer.convert_tokens_to_ids("<|user|>")) == 1  # tiktoken's disallowed_special=()


def test_inference_prompts_are_the_ones_pred_py_sends(llama_tokenizer, glm_tokenizer):
    """A model trained here carries its format as its chat template: a server prompts it as pred.py did."""
    prompt = "Write a 300-word poem about rain."
    llama_tokenizer.chat_template = CHAT_TEMPLATES["llama-inst"]
    served = llama_tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    assert served["input_ids"] == llama_tokenizer(f"[INST]{prompt}[/INST]")["input_ids"]  # pred.py lines 34-35
    glm_tokenizer.chat_template = CHAT_TEMPLATES["glm4"]
    served = glm_tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    ids, _ = _only(
        tokenize_chats(
            [[{"role": "user", "content": prompt}, {"role": "assistant", "content": "x"}]],
            glm_tokenizer, prompt_format="glm4", cache=False,
        )
    )  # fmt: skip
    assistant = glm_tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert served["input_ids"] == ids[: ids.index(assistant) + 1]  # build_chat_input: ... + <|assistant|>


def test_longwriter_picks_the_format_of_the_model_family_and_refuses_others():
    assert resolve_prompt_format("longwriter", "llama") == "llama-inst"
    assert resolve_prompt_format("longwriter", "chatglm") == "glm4"
    assert resolve_prompt_format("template", "qwen2") == "template"
    with pytest.raises(TokenizationError, match=r"Llama and GLM-4 models only.*'qwen2'"):
        resolve_prompt_format("longwriter", "qwen2")


def test_formats_that_a_tokenizer_cannot_build_are_clear_errors(tokenizer, llama_tokenizer):
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    with pytest.raises(TokenizationError, match=r"no \[gMASK\] token: the glm4 format needs a GLM-4 tokenizer"):
        tokenize_chats([chat], tokenizer, prompt_format="glm4", cache=False)
    with pytest.raises(TokenizationError, match="no BOS or EOS token"):
        tokenize_chats([chat], tokenizer, prompt_format="llama-inst", cache=False)
    with pytest.raises(TokenizationError, match="role 'tool'"):
        tokenize_chats([[{"role": "tool", "content": "x"}, *chat]], llama_tokenizer, prompt_format="llama-inst")


def test_the_format_is_part_of_the_cache_key(llama_tokenizer, tmp_path):
    llama_tokenizer.chat_template = CHAT_TEMPLATES["llama-inst"]
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    inst = tokenize_chats([chat], llama_tokenizer, prompt_format="llama-inst", cache=tmp_path)
    template = tokenize_chats([chat], llama_tokenizer, prompt_format="template", cache=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not np.array_equal(inst.tokens, template.tokens)
