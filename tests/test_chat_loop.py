"""The chat loop on the tiny model, driven through its `read_line` seam: turns, every slash
command, /undo, /retry, /save then /load, trimming to the context window, Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import re
import signal

import pytest
from rich.console import Console

import llmcli
from llmcli.chat import commands
from llmcli.chat.loop import ChatLoop
from llmcli.chat.session import ChatSession
from llmcli.sampling import SamplingSettings
from llmcli.render import escape_controls

GREEDY = SamplingSettings(temperature=0, max_new_tokens=6)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return llmcli.load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def tiny_base(tiny_base_dir):
    return llmcli.load(str(tiny_base_dir))


def console() -> Console:
    return Console(file=io.StringIO(), width=300, height=40, color_system=None)


class Chat:
    """A ChatLoop over a list of input lines, with its output captured."""

    def __init__(self, loaded, lines, *, settings=GREEDY, system=None, markdown=False, session=None):
        self.out = console()
        session = session or ChatSession(model=loaded.label, system=system, settings=settings)
        self.lines = list(lines)
        self.read = 0

        def read_line():
            if self.read >= len(self.lines):
                return None
            self.read += 1
            return self.lines[self.read - 1]

        self.loop = ChatLoop(loaded, session, read_line, self.out, commands.dispatch, markdown=markdown)

    @property
    def session(self) -> ChatSession:
        return self.loop.session  # /load replaces it

    def run(self) -> Chat:
        self.loop.run()
        return self

    @property
    def text(self) -> str:
        return self.out.file.getvalue()


def run(loaded, *lines, **kwargs) -> Chat:
    return Chat(loaded, lines, **kwargs).run()


def test_each_line_is_a_turn_and_each_reply_gets_a_stats_line(tiny):
    chat = run(tiny, "hello", "what is the capital of France?")
    roles = [m.role for m in chat.session.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert chat.session.messages[0].content == "hello"
    for reply in chat.session.messages[1::2]:
        # plain mode: the text as generated, control characters made visible (the random
        # tiny model writes some)
        assert reply.content and escape_controls(reply.content) in chat.text
    assert chat.text.count("tok/s") == 2 and chat.text.count("/ 128 (") == 2
    assert "6 tokens" in chat.text and "stopped at max_new_tokens" in chat.text


def test_the_model_sees_the_whole_conversation_every_turn(tiny):
    chat = run(tiny, "one", "two")
    prompt = chat.loop.build_prompt()
    assert prompt.mode == "chat"
    assert prompt.text.count("<|im_start|>user") == 2 and prompt.text.endswith("<|im_start|>assistant\n")
    assert chat.loop.last.generation.prompt_tokens < len(prompt.ids)


def test_blank_lines_are_ignored_and_a_double_slash_sends_a_slash(tiny):
    chat = run(tiny, "", "   ", "//etc/hosts is a file")
    assert [m.content for m in chat.session.messages if m.role == "user"] == ["/etc/hosts is a file"]


def test_exit_stops_reading(tiny):
    chat = run(tiny, "/exit", "never read")
    assert chat.read == 1 and chat.session.messages == []
    for alias in ("/quit", "/bye"):
        assert run(tiny, alias, "never").read == 1


def test_help_lists_every_command(tiny):
    text = run(tiny, "/help").text
    for name in commands.COMMANDS:
        assert name in text
    assert "Alt-Enter" in text and '"""' in text


def test_unknown_command_suggests_the_nearest(tiny):
    chat = run(tiny, "/shwo prompt", "/xyzzy")
    assert "unknown command /shwo" in chat.text and "did you mean /show?" in chat.text
    assert "unknown command /xyzzy" in chat.text and "/help" in chat.text
    assert chat.session.messages == []


def test_system_shows_sets_and_removes(tiny):
    chat = run(tiny, "/system", "/system You are terse.", "/system", "hi", "/system none")
    assert "no system prompt" in chat.text
    assert "You are terse." in chat.text
    assert chat.session.system is None
    # The reply to "hi" was generated with the system prompt in front.
    assert chat.loop.last.generation.prompt_tokens > len(tiny.tokenizer("<|im_start|>user\nhi<|im_end|>\n")["input_ids"])


def test_system_from_prompts_dir(tiny):
    from llmcli.prompting import load_system_prompt

    chat = run(tiny, "/system @engineer", "/system @nope")
    assert chat.session.system == load_system_prompt("engineer")
    assert "no system prompt named 'nope'" in chat.text


def test_set_changes_settings_and_rejects_bad_values_with_the_range(tiny):
    chat = run(tiny, "/set temperature 0.5", "/set top_k 20", "/set top_p 2", "/set colour red", "/set seed", "/set")
    s = chat.session.settings
    assert s.temperature == 0.5 and s.top_k == 20 and s.top_p is None
    assert "temperature = 0.5" in chat.text
    assert "top_p must be in (0, 1]" in chat.text and "valid:" in chat.text
    assert "unknown setting 'colour'" in chat.text
    assert "/set seed needs a value" in chat.text
    assert "repetition_penalty" in chat.text and "system prompt" in chat.text  # `/set` alone lists the settings


def test_show_settings_prompt_template_and_info(tiny, capsys):
    chat = run(tiny, "hello", "/show settings", "/show prompt", "/show template", "/show info", "/show nonsense")
    text = chat.text
    assert "temperature" in text and "max_new_tokens" in text
    # After a reply: the conversation so far, exactly; the next message goes after it.
    so_far = chat.loop.build_prompt(generation_prompt=False)
    assert so_far.text in text and so_far.text.endswith(chat.session.messages[-1].content.strip() + "<|im_end|>\n")
    assert f"{len(so_far.ids)} tokens of 128" in text and "your next message goes after this" in text
    assert "im_start" in text and "add_generation_prompt" in text  # the Jinja template
    assert "no such topic" in text
    assert "layers" in text and "context window" in text  # `/show info`, on the chat's own console


def test_show_prompt_on_a_terminal_marks_newlines_and_specials(tiny):
    chat = Chat(tiny, ["hi", "/show prompt"], markdown=True)
    chat.out = Console(file=io.StringIO(), width=100, height=40, force_terminal=True, color_system="truecolor")
    chat.loop.out = chat.loop.status = chat.out
    chat.run()
    assert "the prompt, as the model reads it" in chat.text and "↵" in chat.text


def test_show_prompt_with_a_message_waiting_ends_where_the_reply_begins(tiny):
    chat = Chat(tiny, ["/show prompt"])
    chat.session.add_user("are you there?")
    chat.run()
    assert chat.text.startswith("<|im_start|>user\nare you there?<|im_end|>\n<|im_start|>assistant\n17 tokens")
    assert "the reply starts here" in chat.text


def test_undo_drops_the_last_exchange(tiny):
    chat = run(tiny, "first", "second", "/undo")
    assert [m.content for m in chat.session.messages if m.role == "user"] == ["first"]
    assert "removed 2 messages" in chat.text
    chat = run(tiny, "/undo")
    assert "nothing to undo" in chat.text


def test_retry_writes_the_last_reply_again(tiny):
    # Sampled, seeded (an unseeded draw made the first reply a lone end token now and then, whose
    # stats line has no tok/s): each reply ends with its stats line, which names its first token.
    chat = run(tiny, "hello", "/retry", settings=SamplingSettings(temperature=1.0, seed=7, max_new_tokens=6))
    assert [m.role for m in chat.session.messages] == ["user", "assistant"]
    assert chat.text.count("first token") == 2  # two replies were generated, one was kept
    assert chat.loop.generated_total > chat.loop.last.generation.generated_tokens
    # temperature 0: the same reply again
    assert run(tiny, "hello", "/retry").session.messages == run(tiny, "hello").session.messages
    assert "nothing to retry" in run(tiny, "/retry").text


def test_save_then_load_round_trips(tiny, tmp_path):
    path = tmp_path / "chat.json"
    saved = run(tiny, "/system Be brief.", "/set temperature 0.3", "hello", "again", f"/save {path}")
    assert "saved 4 messages" in saved.text
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["model"] == tiny.label and data["system"] == "Be brief." and data["settings"]["temperature"] == 0.3
    loaded = run(tiny, "/clear", f"/load {path}", "/show settings")
    assert loaded.session.messages == saved.session.messages
    assert loaded.session.system == "Be brief." and loaded.session.settings == saved.session.settings
    assert "loaded 4 messages" in loaded.text
    assert "› hello" in loaded.text  # the conversation is shown again
    # and it goes on from there
    after = run(tiny, f"/load {path}", "and more")
    assert len(after.session.messages) == 6


def test_save_without_a_path_names_the_file(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chat = run(tiny, "hi", "/save")
    files = list(tmp_path.glob("chat-*.json"))
    assert len(files) == 1 and files[0].name in chat.text


def test_load_errors_are_one_line_and_the_chat_goes_on(tiny, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    chat = run(tiny, "/load", f"/load {tmp_path / 'missing.json'}", f"/load {bad}", "still here")
    assert "/load needs a file" in chat.text and "no such file" in chat.text and "not a saved llmcli chat" in chat.text
    assert chat.session.messages[-1].role == "assistant"


def test_loaded_text_is_never_markup_or_control_codes(tiny, tmp_path):
    path = tmp_path / "evil.json"
    session = ChatSession(model="x")
    session.add_user("[bold red]hi[/bold red]")
    session.add_assistant("\x1b[2J[link=http://x]click[/link] **fine**", interrupted=True)
    session.save(path)
    chat = Chat(tiny, [f"/load {path}"], markdown=True)
    chat.out = Console(file=io.StringIO(), width=100, force_terminal=True, color_system="truecolor")
    chat.loop.out = chat.loop.status = chat.out
    chat.run()
    assert "[bold red]hi[/bold red]" in chat.text and "[link=http://x]click[/link]" in chat.text
    assert "\x1b[2J" not in chat.text and "\\x1b[2J" in chat.text
    assert "interrupted" in chat.text
    # The notice names the loaded model, a path as long as the checkout's: compare words, not line breaks.
    words = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", chat.text).split())  # styles and line breaks aside
    assert f"saved with x, continuing with {chat.loop.model.label}" in words


def test_clear_forgets_the_turns_but_keeps_the_system_prompt(tiny):
    chat = run(tiny, "/system Be brief.", "hello", "/clear")
    assert chat.session.messages == [] and chat.session.system == "Be brief."
    assert "2 messages forgotten" in chat.text


def test_stats_shows_the_last_reply_and_the_session(tiny):
    chat = run(tiny, "/stats", "hello", "/stats")
    assert "none yet" in chat.text
    assert "time to first token" in chat.text and "prompt tokens" in chat.text
    assert "max_new_tokens reached" in chat.text and "tokens generated" in chat.text


def test_tokens_shows_the_reply_and_the_prompt(tiny):
    chat = run(tiny, "/tokens", "hello", "/tokens", "/tokens prompt", "/tokens nonsense")
    text = chat.text
    assert "the prompt, as the model reads it" in text
    assert "the tokens the model generated" in text
    assert "6 tokens" in text  # the reply's own ids
    prompt_count = len(chat.loop.build_prompt(generation_prompt=False).ids)
    assert f"{prompt_count} tokens" in text
    assert "say reply or prompt" in text


def test_probs_shows_the_next_token_table(tiny):
    chat = run(tiny, "hello", "/probs 5", "/probs many")
    text = chat.text
    assert "Next token after" in text and text.count("\n   5  ") == 1  # five rows, once
    assert "/probs takes a number of rows" in text


def test_probs_shows_the_sessions_sampler_cuts(tiny):
    """After `/set top_k 3` at temperature 0.8: a T=0.8 column and a top-k 3 column whose
    numbers are softmax(logits / 0.8) renormalised over the three best, computed here."""
    import torch

    settings = SamplingSettings(temperature=0.8, max_new_tokens=6, seed=1)
    chat = run(tiny, "hello", "/set top_k 3", "/probs 5", settings=settings)
    rows = {line.split()[2]: line.split() for line in chat.text.splitlines() if re.match(r"^\s+[1-5]\s", line)}
    header = next(line for line in chat.text.splitlines() if line.startswith("rank"))
    assert header.split()[-3:] == ["T=0.8", "top-k", "3"]
    prompt = chat.loop.build_prompt(upto=1)  # where the reply began
    with torch.no_grad():
        logits = tiny.backend.model(torch.tensor([prompt.ids])).logits[0, -1].double()
    at_t = torch.softmax(logits / 0.8, dim=-1)
    order = torch.argsort(logits, descending=True)
    kept = at_t[order[:3]] / at_t[order[:3]].sum()
    for rank, token_id in enumerate(order[:5].tolist()):
        cells = rows[str(token_id)]
        assert cells[-2] == f"{100 * at_t[token_id]:.2f}%"
        assert cells[-1] == (f"{100 * kept[rank]:.2f}%" if rank < 3 else "cut")
    assert re.search(r"survivors\s+512\s+512\s+3$", chat.text, re.M)


def test_a_conversation_outgrowing_the_window_drops_the_oldest_turns_and_says_so_once(tiny):
    # The tiny model's window is 128 tokens; each exchange here takes about 25.
    lines = [f"message number {i}: the quick brown fox jumps over the lazy dog" for i in range(8)]
    chat = run(tiny, "/system Be brief.", *lines, settings=SamplingSettings(temperature=0, max_new_tokens=8))
    assert chat.session.dropped > 0
    assert chat.text.count("no longer fits") == 1
    assert "oldest messages dropped" in chat.text
    kept = chat.session.prompt_messages()
    assert kept[0].role == "system" and kept[0].content == "Be brief."
    assert chat.session.messages[-1].role == "assistant"
    assert "message number 7" in chat.session.messages[-2].content
    assert chat.loop.last.generation.prompt_tokens + 8 <= 128  # room was kept for the reply
    assert "message number 0" not in chat.loop.build_prompt().text


def test_a_message_longer_than_the_window_is_refused_and_the_chat_goes_on(tiny):
    chat = run(tiny, "hello", "word " * 400, "after")
    assert "context window" in chat.text and "error:" in chat.text
    users = [m.content for m in chat.session.messages if m.role == "user"]
    assert users == ["hello", "after"]


def interrupting(model, at: int):
    """The same llmcli.Model, its weights wrapped in an InterruptingModel."""
    from dataclasses import replace

    from llmcli.api import Model
    from llmcli.backends.local import LocalBackend

    hf = model.backend.hf() if hasattr(model.backend, "hf") else model.backend.loaded  # transformers' model, to wrap
    return Model(LocalBackend(replace(hf, model=InterruptingModel(hf.model, at))))


class InterruptingModel:
    """The tiny model, but the user presses Ctrl-C (a real SIGINT) at its `at`-th forward call."""

    def __init__(self, model, at: int):
        self.model, self.at, self.calls = model, at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_ctrl_c_during_a_reply_keeps_the_partial_reply_and_the_chat_goes_on(tiny):

    loaded = interrupting(tiny, at=4)  # prefill + 2 tokens, then Ctrl-C
    chat = run(loaded, "tell me a long story", "and another", settings=SamplingSettings(temperature=0, max_new_tokens=20))
    first_reply, second_reply = chat.session.messages[1], chat.session.messages[3]
    assert first_reply.interrupted and first_reply.content
    assert "interrupted ·" in chat.text
    assert not second_reply.interrupted and chat.read == 2
    assert chat.loop.last.generation.finish_reason == "length"
    assert len(chat.session.messages) == 4


def test_in_a_script_ctrl_c_ends_the_chat_after_keeping_the_partial_reply(tiny):

    loaded = interrupting(tiny, at=4)
    chat = Chat(loaded, ["tell me a long story", "never asked"], settings=SamplingSettings(temperature=0, max_new_tokens=20))
    chat.loop.exit_on_ctrl_c = True
    with pytest.raises(KeyboardInterrupt):
        chat.run()
    assert chat.read == 1 and chat.session.messages[-1].interrupted


def test_ctrl_c_while_the_reply_is_drawn_is_held_until_the_drawing_is_done(tiny):
    """A SIGINT that arrives while the stream is printing does not tear the output: it
    is raised at the next token, and the reply ends as interrupted."""

    class PressCtrlCOnWrite(io.StringIO):
        pressed = False

        def write(self, s):
            if not PressCtrlCOnWrite.pressed and s.strip():
                PressCtrlCOnWrite.pressed = True
                os.kill(os.getpid(), signal.SIGINT)
            return super().write(s)

    chat = Chat(tiny, ["hello", "again"], settings=SamplingSettings(temperature=0, max_new_tokens=20))
    chat.out = Console(file=PressCtrlCOnWrite(), width=100, color_system=None)
    chat.loop.out = chat.loop.status = chat.out
    chat.run()
    first = chat.session.messages[1]
    assert first.interrupted and first.content
    assert chat.session.messages[3].content and not chat.session.messages[3].interrupted


def test_ctrl_c_before_the_first_token_keeps_no_empty_reply(tiny):

    loaded = interrupting(tiny, at=1)  # during the prefill
    chat = run(loaded, "hello", "again")
    assert [m.content for m in chat.session.messages if m.role == "user"] == ["again"]
    assert "nothing written" in chat.text


def test_a_base_model_chats_through_the_plain_text_template(tiny_base):
    chat = run(tiny_base, "/system Be brief.", "hello", "/show template", "/show prompt")
    prompt = chat.loop.build_prompt()
    assert prompt.mode == "template" and prompt.stop_strings == ("\nUser:",)
    assert "User: hello\nAssistant:" in prompt.text and prompt.text.endswith("Assistant:")
    assert "base-chat.txt" in chat.text and "{user}" in chat.text
    assert "plain-text template" in chat.text


def test_markdown_mode_prints_the_reply_and_the_stats(tiny):
    """The reply as Rich renders its Markdown (control characters made visible), then the stats."""
    from rich.markdown import Markdown

    chat = run(tiny, "hello", markdown=True)
    reply = chat.session.messages[1].content
    expected = console()
    expected.print(Markdown(escape_controls(reply)))
    shown = [line.strip() for line in expected.file.getvalue().splitlines() if line.strip()]
    lines = [line.strip() for line in chat.text.splitlines() if line.strip()]
    assert shown and lines[: len(shown)] == shown
    assert re.match(r"^6 tokens · [\d.]+ tok/s · first token", lines[len(shown)])
