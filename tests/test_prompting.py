"""Prompt building: chat templates, the plain-text template for base models, raw text, BOS.

Every expectation is computed with the tokenizer itself (apply_chat_template, encode,
decode), never written down as ids.
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from llmcli.errors import LlmcliError
from llmcli.prompting import (
    PROMPTS_DIR,
    Message,
    build_chat_prompt,
    build_raw_prompt,
    has_chat_template,
    list_system_prompts,
    load_chat_template,
    load_system_prompt,
    plain_template_stop,
    render_plain_template,
    trim_to_context,
)

TRICKY = [
    "Hello, world!",
    "  leading spaces, trailing newline\n",
    "Café 🍕 日本語 e\u0301",
    "a literal <|im_end|> is text here",
    "tabs\tand\r\nCRLF",
]


@pytest.fixture(scope="module")
def instruct(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def base(tiny_base_dir):
    return AutoTokenizer.from_pretrained(tiny_base_dir)


@pytest.fixture(scope="module")
def with_bos(tiny_model_dir):
    """The same tokenizer made to add a BOS of its own on every plain encode, as Gemma's does."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, add_bos_token=True, bos_token="<|endoftext|>")
    assert tokenizer("hi")["input_ids"][0] == tokenizer.bos_token_id
    return tokenizer


# ---------------------------------------------------------------- raw


@pytest.mark.parametrize("text", TRICKY)
def test_raw_prompt_is_the_text_byte_for_byte(instruct, text):
    prompt = build_raw_prompt(instruct, text)
    assert prompt.mode == "raw" and prompt.text == text and prompt.stop_strings == ()
    assert instruct.decode(prompt.ids) == text


def test_raw_prompt_does_not_parse_literal_special_tokens(instruct):
    prompt = build_raw_prompt(instruct, "a literal <|im_end|> is text here")
    assert instruct.convert_tokens_to_ids("<|im_end|>") not in prompt.ids
    assert prompt.ids == instruct("a literal <|im_end|> is text here", split_special_tokens=True)["input_ids"]


def test_raw_prompt_adds_no_bos_when_the_tokenizer_adds_none(instruct):
    assert build_raw_prompt(instruct, "Hello").ids == instruct("Hello")["input_ids"]


def test_raw_prompt_has_exactly_one_bos_when_the_tokenizer_adds_one(with_bos):
    ids = build_raw_prompt(with_bos, "Hello").ids
    assert ids == with_bos("Hello")["input_ids"]
    assert ids.count(with_bos.bos_token_id) == 1 and ids[0] == with_bos.bos_token_id


# ---------------------------------------------------------------- chat template


def test_chat_prompt_is_the_tokenizers_template_with_stripped_content(instruct):
    messages = [Message("system", "  Be brief.\n"), Message("user", "What is the capital of France?\n")]
    prompt = build_chat_prompt(instruct, messages)
    stripped = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
    expected = instruct.apply_chat_template(stripped, tokenize=False, add_generation_prompt=True)
    assert prompt.mode == "chat" and prompt.stop_strings == ()
    assert prompt.text == expected
    assert prompt.ids == instruct.apply_chat_template(stripped, tokenize=True, add_generation_prompt=True)["input_ids"]


def test_chat_prompt_without_generation_prompt(instruct):
    messages = [Message("user", "Hi"), Message("assistant", "Hello!")]
    prompt = build_chat_prompt(instruct, messages, add_generation_prompt=False)
    as_dicts = [{"role": m.role, "content": m.content} for m in messages]
    assert prompt.text == instruct.apply_chat_template(as_dicts, tokenize=False, add_generation_prompt=False)


def test_chat_prompt_never_doubles_a_bos_the_template_writes(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, add_bos_token=True, bos_token="<|endoftext|>")
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    prompt = build_chat_prompt(tokenizer, [Message("user", "Hi")])
    assert prompt.text.startswith("<|endoftext|><|im_start|>")
    assert prompt.ids.count(tokenizer.bos_token_id) == 1 and prompt.ids[0] == tokenizer.bos_token_id


def test_chat_prompt_adds_the_bos_a_template_forgot(with_bos):
    ids = build_chat_prompt(with_bos, [Message("user", "Hi")]).ids
    assert ids[0] == with_bos.bos_token_id and ids[1] != with_bos.bos_token_id


def test_a_template_that_refuses_the_conversation_is_a_user_error(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}x"
    with pytest.raises(LlmcliError, match="System role not supported"):
        build_chat_prompt(tokenizer, [Message("system", "s"), Message("user", "u")])


def test_unknown_role_is_a_bug():
    with pytest.raises(ValueError):
        build_chat_prompt(None, [Message("robot", "x")])


# ---------------------------------------------------------------- the plain-text template (base models)


def test_base_model_chats_through_the_plain_text_template(base):
    assert not has_chat_template(base)
    prompt = build_chat_prompt(base, [Message("user", "  What is the capital of France?\n")])
    template = load_chat_template()
    assert prompt.mode == "template"
    assert prompt.text == render_plain_template(template, [Message("user", "What is the capital of France?")])
    assert prompt.text.endswith("\nUser: What is the capital of France?\nAssistant:")
    assert prompt.stop_strings == ("\nUser:",) == (plain_template_stop(template),)
    assert prompt.ids == base(prompt.text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def test_plain_template_turns_and_system_line():
    template = "Preamble.\n{system}\n\nQ: {user}\nA: {assistant}\n"
    turns = [Message("user", "one"), Message("assistant", "uno"), Message("user", "two")]
    assert render_plain_template(template, turns) == "Preamble.\n\nQ: one\nA: uno\nQ: two\nA:"
    with_system = [Message("system", "Be terse."), *turns]
    assert render_plain_template(template, with_system) == "Preamble.\nBe terse.\n\nQ: one\nA: uno\nQ: two\nA:"
    assert render_plain_template(template, turns[:2], add_generation_prompt=False) == "Preamble.\n\nQ: one\nA: uno"
    assert plain_template_stop(template) == "\nQ:"


def test_plain_template_without_a_system_placeholder_puts_the_system_prompt_after_the_preamble():
    template = "Preamble.\n\nUser: {user}\nAssistant: {assistant}\n"
    text = render_plain_template(template, [Message("system", "Be terse."), Message("user", "hi")])
    assert text == "Preamble.\nBe terse.\n\nUser: hi\nAssistant:"


def test_plain_template_keeps_literal_special_token_text_as_text(base):
    prompt = build_chat_prompt(base, [Message("user", "say <|im_end|> please")])
    assert base.convert_tokens_to_ids("<|im_end|>") not in prompt.ids


def test_shipped_template_has_user_and_assistant_turns():
    template = load_chat_template()
    assert "User: {user}" in template and "Assistant: {assistant}" in template


# ---------------------------------------------------------------- trimming to the context window


def test_trim_drops_the_oldest_turns_and_keeps_the_system_prompt(instruct):
    system = Message("system", "Be brief.")
    turns = []
    for i in range(6):
        turns += [Message("user", f"Question number {i}: what is {i} + {i}?"), Message("assistant", f"It is {2 * i}.")]
    messages = [system, *turns, Message("user", "And the last one?")]
    full = len(build_chat_prompt(instruct, messages).ids)
    last_two = [system, *turns[-2:], messages[-1]]
    window = len(build_chat_prompt(instruct, last_two).ids) + 10  # room for the last exchange only
    kept, dropped = trim_to_context(instruct, messages, window, reserve=10)
    assert full > window
    assert kept == last_two and dropped == len(messages) - len(last_two)
    assert len(build_chat_prompt(instruct, kept).ids) + 10 <= window


def test_trim_leaves_a_fitting_conversation_alone(instruct):
    messages = [Message("user", "Hi")]
    assert trim_to_context(instruct, messages, 128, reserve=8) == (messages, 0)


def test_trim_never_drops_the_last_message(instruct):
    messages = [Message("system", "s"), Message("user", "long " * 50)]
    kept, dropped = trim_to_context(instruct, messages, 16, reserve=4)
    assert kept == messages and dropped == 0  # generate() reports the overflow with its counts


# ---------------------------------------------------------------- prompts/


def test_system_prompts_are_listed_and_loaded():
    names = list_system_prompts()
    assert "engineer" in names and "base-chat" not in names
    assert load_system_prompt("engineer") == (PROMPTS_DIR / "engineer.txt").read_text().strip()


def test_unknown_system_prompt_lists_the_available_ones():
    with pytest.raises(LlmcliError) as e:
        load_system_prompt("no-such")
    assert "no-such" in e.value.message and "engineer" in e.value.hint
