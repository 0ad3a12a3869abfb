"""ChatSession on its own: undo, retry, clear, /set parsing, save and load."""

from __future__ import annotations

import json
import os

import pytest

from llmcli.chat.session import ChatMessage, ChatSession
from llmcli.errors import LlmcliError
from llmcli.sampling import SamplingSettings


def conversation() -> ChatSession:
    s = ChatSession(model="tiny", system="Be brief.")
    s.add_user("hello")
    s.add_assistant("hi there")
    s.add_user("what is 2+2?")
    s.add_assistant("4, or so I was about to", interrupted=True)
    return s


def test_prompt_messages_put_the_system_prompt_first():
    roles = [m.role for m in conversation().prompt_messages()]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert [m.role for m in ChatSession().prompt_messages()] == []


def test_undo_drops_the_last_exchange_and_keeps_the_system_prompt():
    s = conversation()
    removed = s.undo()
    assert [m.content for m in removed] == ["what is 2+2?", "4, or so I was about to"]
    assert [m.content for m in s.messages] == ["hello", "hi there"]
    s.undo()
    assert s.messages == [] and s.system == "Be brief."
    with pytest.raises(LlmcliError, match="nothing to undo"):
        s.undo()


def test_undo_of_a_message_that_got_no_reply():
    s = ChatSession()
    s.add_user("one")
    s.add_assistant("two")
    s.add_user("unanswered")
    assert [m.content for m in s.undo()] == ["unanswered"]
    assert len(s.messages) == 2


def test_retry_takes_back_only_the_reply():
    s = conversation()
    assert s.pop_reply_for_retry().content.startswith("4")
    assert s.messages[-1] == ChatMessage("user", "what is 2+2?")
    assert s.pop_reply_for_retry() is None  # ends with a user message: just answer it
    with pytest.raises(LlmcliError):
        ChatSession().pop_reply_for_retry()


def test_clear_and_keep_last_count_what_went():
    s = conversation()
    assert s.keep_last(2) == 2 and s.dropped == 2
    assert s.messages[0].content == "what is 2+2?"
    assert s.clear() == 2 and s.messages == [] and s.dropped == 0 and s.system == "Be brief."


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("temperature", "0.2", 0.2),
        ("top_k", "40", 40),
        ("top-p", "0.9", 0.9),
        ("MIN_P", "0.05", 0.05),
        ("max_new_tokens", "64", 64),
        ("seed", "7", 7),
        ("repetition_penalty", "1.1", 1.1),
        ("top_k", "none", None),
        ("seed", "off", None),
    ],
)
def test_set_parses_each_setting(key, value, expected):
    s = ChatSession()
    s.set(key, value)
    assert getattr(s.settings, key.lower().replace("-", "_")) == expected


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("temperature", "hot", "temperature must be a number"),
        ("top_k", "1.5", "top_k must be an integer or 'none'"),
        ("temperature", "-1", "temperature"),
        ("top_p", "1.5", "top_p"),
        ("max_new_tokens", "0", "max_new_tokens"),
        ("colour", "blue", "unknown setting 'colour'"),
    ],
)
def test_set_rejects_bad_values_and_keeps_the_old_settings(key, value, message):
    s = ChatSession()
    before = s.settings
    with pytest.raises(LlmcliError, match=message):
        s.set(key, value)
    assert s.settings == before


def test_save_then_load_round_trips(tmp_path):
    s = conversation()
    s.set("temperature", "0.3")
    s.set("seed", "11")
    path = s.save(tmp_path / "chat.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "llmcli-chat" and data["model"] == "tiny"
    assert data["messages"][-1] == {"role": "assistant", "content": "4, or so I was about to", "interrupted": True}
    back = ChatSession.load(path)
    assert back.messages == s.messages
    assert back.system == s.system and back.settings == s.settings and back.model == "tiny"


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "chat.json"
    target.write_text("the old file\n", encoding="utf-8")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(LlmcliError, match="cannot save"):
        conversation().save(target)
    assert target.read_text(encoding="utf-8") == "the old file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not JSON"),
        ('{"hello": 1}', "not a saved llmcli chat"),
        ('{"format": "llmcli-chat", "version": 99}', "version 99"),
        ('{"format": "llmcli-chat", "version": 1, "messages": [{"role": "wizard", "content": "x"}]}', "not a saved"),
        ('{"format": "llmcli-chat", "version": 1, "settings": {"temperature": -3}}', "temperature"),
    ],
)
def test_load_rejects_what_save_did_not_write(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LlmcliError, match=message):
        ChatSession.load(path)


def test_load_of_a_missing_file_is_one_line():
    with pytest.raises(LlmcliError, match="no such file"):
        ChatSession.load("/nonexistent/chat.json")


def test_settings_default_to_the_engine_defaults():
    assert ChatSession().settings == SamplingSettings()


def test_saving_into_a_directory_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(LlmcliError, match="no such directory") as e:
        conversation().save(tmp_path / "missing" / "chat.json")
    assert e.value.hint and not (tmp_path / "missing").exists()
