import lw_train.tokenization as tokenization
import pytest
from lw_core.schemas import ChatMessage, SFTRecord
from lw_train import tokenize_chats
from lw_train.tokenization import TokenizationError

CHATML_GENERATION = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHAT = [
    {"role": "user", "content": "Write a poem."},
    {"role": "assistant", "content": "Roses\u200b are red."},
    {"role": "user", "content": "Longer."},
    {"role": "assistant", "content": "Violets are blue, and so on."},
]


def trained_text(tokenizer, sample):
    return tokenizer.decode([t for t in sample["labels"] if t != -100])


def test_only_assistant_turns_and_end_of_turn_are_trained(tokenizer):
    [sample] = tokenize_chats([CHAT], tokenizer, cache=False)
    assert trained_text(tokenizer, sample) == "Roses are red.<|im_end|>Violets are blue, and so on.<|im_end|>"
    assert tokenizer.decode(sample["input_ids"]) == tokenizer.apply_chat_template(
        [{**m, "content": m["content"].replace("\u200b", "")} for m in CHAT], tokenize=False
    )
    assert len(sample["input_ids"]) == len(sample["labels"])


def test_generation_block_templates_use_their_mask_and_agree(tokenizer):
    [incremental] = tokenize_chats([CHAT], tokenizer, cache=False)
    tokenizer.chat_template = CHATML_GENERATION
    [masked] = tokenize_chats([CHAT], tokenizer, cache=False)
    assert masked["input_ids"].tolist() == incremental["input_ids"].tolist()
    assert masked["labels"].tolist() == incremental["labels"].tolist()


def test_accepts_records_dicts_and_message_lists(tokenizer):
    record = SFTRecord(messages=[ChatMessage(role=m["role"], content=m["content"]) for m in CHAT])
    result = tokenize_chats([record, {"messages": CHAT}, CHAT], tokenizer, cache=False)
    assert len(result) == 3
    assert len({tuple(s["input_ids"].tolist()) for s in result}) == 1


def test_over_long_policies(tokenizer):
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    data = [short, CHAT, short]
    limit = len(tokenize_chats([short], tokenizer, cache=False)[0]["input_ids"]) + 5
    dropped = tokenize_chats(data, tokenizer, max_tokens=limit, cache=False)
    assert dropped.dropped_overlong == [1]
    assert dropped.source.tolist() == [0, 2]
    assert "1 dropped as over-long" in dropped.summary()
    prompt = tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    cut = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 3
    truncated = tokenize_chats(data, tokenizer, max_tokens=cut, overlong="truncate", cache=False)
    assert truncated.truncated == [1] and max(truncated.lengths) == cut
    assert trained_text(tokenizer, truncated[1]) == "Ros"
    assert tokenize_chats(data, tokenizer, max_tokens=cut - 3, overlong="truncate", cache=False).dropped_untrained == [
        1
    ]
    with pytest.raises(TokenizationError, match=r"record 1 has \d+ tokens, more than max_tokens"):
        tokenize_chats(data, tokenizer, max_tokens=limit, overlong="error", cache=False)


def test_chats_without_assistant_tokens_are_dropped_and_counted(tokenizer):
    result = tokenize_chats([[{"role": "user", "content": "Hi"}], CHAT], tokenizer, cache=False)
    assert result.dropped_untrained == [0] and len(result) == 1


def test_cache_hits_by_tokenizer_and_data(tokenizer, tmp_path, monkeypatch):
    first = tokenize_chats([CHAT], tokenizer, cache=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again despite a cache hit")

    monkeypatch.setattr(tokenization, "_tokenize", fail)
    again = tokenize_chats([CHAT], tokenizer, cache=tmp_path)
    assert again[0]["labels"].tolist() == first[0]["labels"].tolist()
    monkeypatch.undo()
    tokenize_chats([CHAT[:2]], tokenizer, cache=tmp_path)
    tokenize_chats([CHAT], tokenizer, cache=tmp_path, max_tokens=10_000)
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_cache_defaults_to_lw_home(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("LW_HOME", str(tmp_path))
    tokenize_chats([CHAT], tokenizer)
    assert len(list((tmp_path / "train" / "tokenized").glob("*.npz"))) == 1


def test_templates_that_rewrite_history_are_refused(tokenizer):
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + (':' if loop.last else '=') + m['content'] + '\n' }}{% endfor %}"
    )
    with pytest.raises(TokenizationError, match="record 0: the chat template renders turn 1 differently"):
        tokenize_chats([CHAT], tokenizer, cache=False)


def test_bad_messages_are_reported_with_their_record(tokenizer):
    with pytest.raises(TokenizationError, match="record 1: message 0 needs string 'role' and 'content'"):
        tokenize_chats([CHAT, [{"role": "user"}]], tokenizer, cache=False)
