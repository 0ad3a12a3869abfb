"""The engine's tokenizer and chat templates against transformers' AutoTokenizer, on tiny models.

Expected ids and prompts come from transformers in each test, on the same saved files.
"""

from __future__ import annotations

import json
import shutil

import jinja2
import pytest
from transformers import AutoTokenizer, Qwen2Tokenizer

from llmcli.engine import UnsupportedModel
from llmcli.engine.chat_template import render_chat
from llmcli.engine.tokenizer import load_tokenizer
from tests.tiny_families import build_family
from tests.tiny_models import CHATML_TEMPLATE

# Text tokenizers get wrong first: accents (composed and combining), emoji with a skin-tone
# modifier, CJK the merges never saw, code, runs of spaces/tabs/newlines, and special tokens
# written as literal text.
HARD_TEXT = [
    "Hello, world!",
    "Café, naïve, résumé — déjà vu, crème brûlée.",
    "e\u0301 and \u00e9 (combining and composed)",
    "I love pizza 🍕 and 👍🏽!",
    "中文 and 日本語, 한국어 too",
    "def add(a, b):\n    return a + b  # 3 + 4 = 7\n",
    "  two leading spaces,   three inside,\tand\t\ttabs",
    "line one\n\n\nline four\r\n",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "literal <|im_end|> and <bos> and <eos> inside text",
    " ",
    "",
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    # byte-level BPE with ChatML (SmolLM2's shape) and SentencePiece-like BPE with <bos> (Gemma's)
    return {name: build_family(name, root / name) for name in ("llama", "gemma3_text", "qwen2")}


def both(path):
    return AutoTokenizer.from_pretrained(path), load_tokenizer(path)


@pytest.mark.parametrize("name", ["llama", "gemma3_text"])
@pytest.mark.parametrize("split", [False, True])
def test_ids_equal_transformers_on_hard_text(dirs, name, split):
    reference, tokenizer = both(dirs[name])
    for text in HARD_TEXT:
        for special in (True, False):
            expected = reference(text, add_special_tokens=special, split_special_tokens=split).input_ids
            assert tokenizer.encode(text, add_special_tokens=special, split_special_tokens=split) == expected, text
        for skip in (False, True):
            assert tokenizer.decode(expected, skip_special_tokens=skip) == reference.decode(
                expected, skip_special_tokens=skip
            )
        assert tokenizer.convert_ids_to_tokens(expected) == reference.convert_ids_to_tokens(expected)


def test_bos_as_each_tokenizer_json_says(dirs):
    reference, smol_like = both(dirs["llama"])
    gemma_reference, gemma_like = both(dirs["gemma3_text"])
    assert smol_like.encode("Hello") == reference("Hello").input_ids
    assert smol_like.bos_token_id not in smol_like.encode("Hello")  # SmolLM2 adds no BOS
    assert gemma_like.encode("Hello")[0] == gemma_like.bos_token_id == gemma_reference.bos_token_id
    assert gemma_like.encode("Hello") == gemma_reference("Hello").input_ids


def test_special_tokens_and_sizes_equal_transformers(dirs):
    for name in ("llama", "gemma3_text"):
        reference, tokenizer = both(dirs[name])
        assert tokenizer.special_tokens == reference.special_tokens_map
        assert tokenizer.eos_token_id == reference.eos_token_id
        assert tokenizer.pad_token_id == reference.pad_token_id
        assert tokenizer.all_special_ids == sorted(reference.all_special_ids)
        assert len(tokenizer) == len(reference)


@pytest.mark.parametrize("listed_in_config", [False, True])
def test_special_tokens_registered_as_transformers_does(dirs, tmp_path, listed_in_config):
    """tokenizer.json lists `<|im_start|>` (the bos_token) as a plain added token; transformers
    makes it special (skipped by decode, split by split_special_tokens). tokenizer_config.json
    may list the added tokens too (older saves), here with one more that the file lacks."""
    path = tmp_path / "registered"
    shutil.copytree(dirs["llama"], path)
    data = json.loads((path / "tokenizer.json").read_text())
    for token in data["added_tokens"]:
        if token["content"] == "<|im_start|>":
            token["special"] = False
    (path / "tokenizer.json").write_text(json.dumps(data))
    if listed_in_config:
        config = json.loads((path / "tokenizer_config.json").read_text())
        listed = {str(t.pop("id")): t for t in json.loads(json.dumps(data["added_tokens"]))}
        listed[str(len(data["model"]["vocab"]))] = {"content": "<tool>", "special": True, "normalized": False}
        (path / "tokenizer_config.json").write_text(json.dumps({**config, "added_tokens_decoder": listed}))
    reference, tokenizer = both(path)
    text = "<|im_start|>user <tool> a b<|im_end|>"
    for split in (False, True):
        ids = reference(text, split_special_tokens=split).input_ids
        assert tokenizer.encode(text, split_special_tokens=split) == ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
    assert len(tokenizer) == len(reference)


def test_split_special_tokens_from_tokenizer_config(dirs, tmp_path):
    path = tmp_path / "split"
    shutil.copytree(dirs["llama"], path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "split_special_tokens": True}))
    reference, tokenizer = both(path)
    text = "<|im_start|>user\nhi<|im_end|>"
    assert tokenizer.encode(text) == reference(text).input_ids
    assert tokenizer.encode(text, split_special_tokens=False) == reference(text, split_special_tokens=False).input_ids
    assert tokenizer.encode(text) != tokenizer.encode(text, split_special_tokens=False)


def test_refuses_a_tokenizer_transformers_rebuilds_differently(dirs):
    """Qwen2's model type makes AutoTokenizer build Qwen2Tokenizer's own pipeline (its regex,
    NFC) around the vocabulary, ignoring the byte-level pipeline of this tokenizer.json."""
    assert type(AutoTokenizer.from_pretrained(dirs["qwen2"])).__name__ == "Qwen2Tokenizer"
    with pytest.raises(UnsupportedModel, match="Qwen2Tokenizer"):
        load_tokenizer(dirs["qwen2"])


def test_accepts_a_qwen2_tokenizer_json(dirs, tmp_path):
    """A tokenizer.json that Qwen2Tokenizer itself wrote has its pipeline: the ids then agree."""
    data = json.loads((dirs["qwen2"] / "tokenizer.json").read_text())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    path = tmp_path / "qwen2-style"
    Qwen2Tokenizer(vocab=data["model"]["vocab"], merges=merges).save_pretrained(path)
    shutil.copy(dirs["qwen2"] / "config.json", path / "config.json")
    reference, tokenizer = both(path)
    for text in HARD_TEXT:
        for split in (False, True):
            assert tokenizer.encode(text, split_special_tokens=split) == reference(
                text, split_special_tokens=split
            ).input_ids


# ---------------------------------------------------------------- chat templates

SMOLLM2_LIKE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma's format: bos_token, the system prompt folded into the first user turn, roles checked.
GEMMA_LIKE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set prefix = messages[0]['content'] + '\n\n' -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set prefix = '' -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception('roles must alternate user/assistant') }}
    {%- endif -%}
    {{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' }}
    {{- (prefix if loop.first else '') + (message['content'] | trim) + '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif -%}
"""

# Block tags on their own indented lines and no `-` modifiers, so trim_blocks/lstrip_blocks decide
# the whitespace; namespace, dict(), tojson (non-ASCII, indent), {% generation %}, loop controls,
# strftime_now, eos_token, reasoning aliases and keys dropped for None values.
FEATURES = """{% set ns = namespace(system='', turns=0) %}
{% for message in messages %}
    {% if message.role == 'system' %}
        {% set ns.system = message.content %}
        {% continue %}
    {% endif %}
    {% set ns.turns = ns.turns + 1 %}
{% endfor %}
{% if tools %}
<tools year="{{ strftime_now('%Y') }}">
{{ tools | tojson(indent=2) }}
</tools>
{% endif %}
{% if ns.system %}
System ({{ ns.turns }} turns): {{ ns.system }}
{% endif %}
{% for message in messages if message.role != 'system' %}
    {% set meta = dict(role=message.role, n=loop.index) %}
    {% if message.role == 'assistant' %}
{{ meta | tojson }} {% generation %}{% if message.reasoning_content is defined %}<think>{{ message.reasoning_content }}</think>{% endif %}{{ message.content | default('') }}{% endgeneration %}{{ eos_token }}
    {% else %}
{{ meta | tojson }} {{ message.content }}
    {% endif %}
    {% if message.tool_calls is defined %}
calls: {{ message.tool_calls | tojson }}
    {% endif %}
    {% if loop.index >= 5 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
{"role": "assistant"} {% endif %}"""

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! 👋"},
        {"role": "user", "content": "  Café? 中文, and a literal <|im_end|>  "},
    ],
]
FEATURE_CONVERSATIONS = CONVERSATIONS + [
    [
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": None, "tool_calls": [{"name": "weather", "arguments": {"city": "Zürich"}}]},
        {"role": "tool", "content": "12°C"},
        {"role": "assistant", "content": "12°C.", "reasoning": "The tool said so."},
    ],
    [{"role": "user", "content": f"message {i}"} for i in range(8)],
]
TOOLS = [{"name": "weather", "description": "Météo", "parameters": {"city": {"type": "string"}}}]


@pytest.mark.parametrize("template", [CHATML_TEMPLATE, SMOLLM2_LIKE, GEMMA_LIKE, FEATURES])
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_templates_render_as_transformers(dirs, template, generation_prompt):
    reference, tokenizer = both(dirs["gemma3_text"])  # <bos>/<eos>: bos_token shows in GEMMA_LIKE
    conversations = FEATURE_CONVERSATIONS if template is FEATURES else CONVERSATIONS
    for conversation in conversations:
        for tools in (None, TOOLS) if template is FEATURES else (None,):
            expected = reference.apply_chat_template(
                conversation, chat_template=template, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
            )
            got = render_chat(
                template, conversation, add_generation_prompt=generation_prompt, tools=tools, **tokenizer.special_tokens
            )
            assert got == expected


def test_template_errors_as_transformers(dirs):
    reference, tokenizer = both(dirs["gemma3_text"])
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(jinja2.TemplateError) as expected:
        reference.apply_chat_template(bad, chat_template=GEMMA_LIKE, tokenize=False)
    with pytest.raises(jinja2.TemplateError) as got:
        render_chat(GEMMA_LIKE, bad, **tokenizer.special_tokens)
    assert str(got.value) == str(expected.value) == "roles must alternate user/assistant"
    with pytest.raises(jinja2.exceptions.SecurityError):  # the sandbox holds
        render_chat("{{ messages.__class__.__mro__ }}", bad)


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_own_template_and_chat_ids_as_transformers(dirs, generation_prompt):
    """The template of the model directory (chat_template.jinja), rendered and tokenized."""
    reference, tokenizer = both(dirs["llama"])
    for conversation in CONVERSATIONS:
        expected = reference.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
        text = tokenizer.apply_chat_template(conversation, add_generation_prompt=generation_prompt)
        assert text == expected
        ids = reference.apply_chat_template(conversation, add_generation_prompt=generation_prompt)["input_ids"]
        assert tokenizer.encode(text, add_special_tokens=False) == ids


def test_template_from_tokenizer_config_and_named_templates(dirs, tmp_path):
    """transformers 5 reads chat_template.jinja first, else tokenizer_config.json's entry; files in
    additional_chat_templates/ make named templates, of which 'default' is used."""
    in_config = tmp_path / "in-config"
    shutil.copytree(dirs["llama"], in_config)
    (in_config / "chat_template.jinja").unlink()
    config = json.loads((in_config / "tokenizer_config.json").read_text())
    (in_config / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": SMOLLM2_LIKE}))

    named = tmp_path / "named"
    shutil.copytree(dirs["llama"], named)
    (named / "additional_chat_templates").mkdir()
    (named / "additional_chat_templates" / "terse.jinja").write_text(GEMMA_LIKE)

    conversation = CONVERSATIONS[0]
    for path in (in_config, named):
        reference, tokenizer = both(path)
        expected = reference.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        assert tokenizer.apply_chat_template(conversation, add_generation_prompt=True) == expected
    assert set(load_tokenizer(named).chat_template) == {"default", "terse"}


def test_no_template_is_a_clear_error(dirs):
    tokenizer = load_tokenizer(dirs["gemma3_text"])  # a "base model": no template anywhere
    assert tokenizer.chat_template is None
    with pytest.raises(ValueError, match="no chat template"):
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
