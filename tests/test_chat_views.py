"""The inspection views in chat: /score, /lens and /attention on the last exchange."""

from __future__ import annotations

import io
import re

import pytest
import torch
from rich.console import Console

import llmcli
from llmcli.chat import commands
from llmcli.chat.loop import ChatLoop
from llmcli.chat.session import ChatSession
from llmcli.sampling import SamplingSettings


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return llmcli.load(str(tiny_model_dir))


def chat(model, *lines):
    out = Console(file=io.StringIO(), width=200, height=40, color_system=None)
    feed = iter(lines)
    session = ChatSession(model=model.label, settings=SamplingSettings(temperature=0, max_new_tokens=6))
    loop = ChatLoop(model, session, lambda: next(feed, None), out, commands.dispatch, markdown=False)
    loop.run()
    return loop, out.file.getvalue()


def test_score_is_the_replys_own_loss_in_its_conversation(tiny):
    loop, text = chat(tiny, "hello", "/score")
    prompt = loop.build_prompt(upto=1)
    reply = [i for i in loop.last_reply_ids if i not in tiny.view.special_ids]
    ids = [*prompt.ids, *reply]
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny.backend.model(torch.tensor([ids])).logits[0].double(), dim=-1)
    expected = -sum(float(logprobs[len(prompt.ids) - 1 + i, t]) for i, t in enumerate(reply)) / len(reply)
    nll = float(re.search(r"mean NLL\s+([\d.]+) nats", text).group(1))
    assert nll == pytest.approx(expected, abs=5e-4)
    assert f"{len(reply)} tokens, {len(reply)} scored" in text


def test_lens_looks_at_the_replys_first_token(tiny):
    loop, text = chat(tiny, "hello", "/lens 2")
    assert "the token that came next" in text and "Logit lens after" in text
    _, before = chat(tiny, "/lens")
    assert "no reply yet" in before


def test_attention_is_the_conversations_last_layer_pattern(tiny):
    loop, text = chat(tiny, "hello", "/attention 1", "/attention x")
    assert "layer 1 of 0–1" in text and "query ↓" in text
    assert "/attention takes a whole number" in text
