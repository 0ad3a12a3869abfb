"""The library layer on the tiny model: what `import llmcli` offers, checked against
transformers directly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import llmcli
from llmcli.errors import LlmcliError


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return llmcli.load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def base(tiny_base_dir):
    return llmcli.load(str(tiny_base_dir))


def test_import_llmcli_is_light():
    code = "import sys, llmcli\nprint(sorted(m for m in ('torch', 'transformers', 'rich', 'typer') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_greedy_generate_is_transformers_generate(model):
    reply = model.generate("The cat", mode="raw", temperature=0, max_new_tokens=8)
    ids = model.tokenizer("The cat", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = model.backend.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=8)[0, len(ids):]
    assert reply.token_ids == expected.tolist()
    assert reply.text == model.tokenizer.decode(expected.tolist())
    assert reply.stats.generated_tokens == 8 and reply.finish_reason == "length"


def test_a_response_read_without_iterating_runs_and_one_left_early_is_interrupted(model):
    assert model.generate("Hello", mode="raw", temperature=0, max_new_tokens=5).stats.generated_tokens == 5
    reply = model.generate("Hello", mode="raw", temperature=0, max_new_tokens=20)
    for n, _ in enumerate(reply, 1):
        if n == 3:
            break
    assert reply.finish_reason == "interrupted" and len(reply.token_ids) == 3


def test_the_prompt_modes(model, base):
    assert model.prompt("hi").mode == "chat" and base.prompt("hi").mode == "raw"
    assert model.prompt("hi", mode="raw").text == "hi"
    assert base.prompt("hi", mode="chat").mode == "template"
    assert "<|im_start|>system\nBe brief.<|im_end|>" in model.prompt("hi", system="Be brief.").text
    with pytest.raises(LlmcliError, match="system prompt needs chat mode"):
        model.prompt("hi", system="x", mode="raw")


def test_chat_takes_messages_as_dicts(model):
    messages = [{"role": "user", "content": "  hello  "}]
    reply = model.chat(messages, temperature=0, max_new_tokens=4)
    assert reply.prompt.text == model.chat_prompt(messages).text
    assert "<|im_start|>user\nhello<|im_end|>" in reply.prompt.text  # a message is stripped


def test_next_token_is_a_direct_softmax(model):
    report = model.next_token("The capital of France is", num=5, temperatures=(0.5, 1.0))
    ids = model.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.backend.model(torch.tensor([ids])).logits[0, -1].double()
    for column, t in zip(report.table.columns, (0.5, 1.0)):
        expected = torch.softmax(logits / t, dim=-1)
        assert column.probs == pytest.approx([float(expected[r.id]) for r in report.table.rows], abs=1e-6)  # float32 logits, one position or all
    assert [r.id for r in report.table.rows] == torch.topk(logits, 5).indices.tolist()


def test_sampling_settings_are_checked(model):
    with pytest.raises(LlmcliError, match="seed must be between 0 and"):
        model.generate("hi", seed=2**70)
    with pytest.raises(TypeError):
        model.generate("hi", temprature=1)


def test_the_tokenizer_alone(tiny_model_dir, model):
    tokenizer = llmcli.load_tokenizer(str(tiny_model_dir))
    assert tokenizer.tokenize("Hello world").ids == model.tokenizer("Hello world")["input_ids"]
    assert tokenizer.detokenize(tokenizer.tokenize("Hello world").ids).text == "Hello world"
