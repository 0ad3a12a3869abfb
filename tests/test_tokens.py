"""The token core (`llmcli.inspect.tokens`) on tiny tokenizers of both kinds.

Two tokenizers stand in for the embedded models: the tiny model's byte-level BPE
(SmolLM2's kind: `Ġ` for spaces, a character split over tokens as partial bytes) and a
SentencePiece-like BPE built here (Gemma's kind: `▁` for spaces, `<0xNN>` byte fallback,
a BOS added on encode). Every id is checked against transformers' own `encode`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcli.errors import BadInput
from llmcli import tokens as token_text
from llmcli.inspect import tokens as core

# The strings the issue names: accents, CJK, emoji with ZWJ sequences, whitespace runs,
# tabs/newlines, code, URLs, numbers, text that looks like special tokens or Rich markup,
# terminal escapes, invisible characters, and nothing at all.
HARD_CASES = [
    "Hello, world!",
    "Café naïve résumé déjà vu — crème brûlée, jalapeño",
    "e\u0301 is e and a combining acute",
    "日本語のテキスト、中文和한국어",
    "👩\u200d👩\u200d👧 family, 👍🏽 thumbs up, 🏳️\u200d🌈 flag, 🍕",
    "   leading, and   runs   of spaces   ",
    "\ttabs\t\tand\nnewlines\n\n\nand\r\nCRLF",
    "def f(x):\n    return {'a': [x, x**2]}  # code\n",
    "https://example.org/path?q=1&lang=en#frag",
    "3.14159 1,000,000 -42 0x1F 1e-9 2024-11-22 1234567890",
    "<|im_start|>user\nhi<|im_end|> <bos> <eos> <|endoftext|>",
    "[bold]x[/bold] [red]y[/] [link=https://example.com]z[/link]",
    "\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J gone",
    "zero\u200bwidth \u202eevil\u202c nbsp\u00a0here",
    "",
]


# ---------------------------------------------------------------- tokenizers to test on


@pytest.fixture(scope="session", params=["byte-level", "sentencepiece"])
def kind_dir(request, tiny_model_dir, spm_dir) -> Path:
    return tiny_model_dir if request.param == "byte-level" else spm_dir


def hf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def fast_view(path: Path) -> token_text.TokenizerView:
    import tokenizers

    return token_text.TokenizerView(tokenizers.Tokenizer.from_file(str(path / "tokenizer.json")))


# ---------------------------------------------------------------- ids equal transformers


@pytest.mark.parametrize("text", HARD_CASES)
def test_ids_equal_transformers_on_both_paths(kind_dir, text):
    hf = hf_tokenizer(kind_dir)
    for view in (fast_view(kind_dir), token_text.TokenizerView(hf)):
        for add in (True, False):
            expected = hf.encode(text, add_special_tokens=add, split_special_tokens=True)
            assert view.encode(text, add_special=add) == expected
            assert view.encode(text, add_special=add, parse_special=True) == hf.encode(text, add_special_tokens=add)


@pytest.mark.parametrize("text", HARD_CASES)
def test_token_bytes_join_to_the_text(kind_dir, text):
    """Each token's bytes are exact: joined (special tokens the encoder added left out) they are the input."""
    view = fast_view(kind_dir)
    result = core.tokenize(view, text, "tiny", add_special=False)
    assert b"".join(t.bytes for t in result.tokens) == text.encode("utf-8")
    assert result.characters == len(text)
    assert "\ufffd" not in "".join(t.text for t in result.tokens)


def test_the_two_paths_give_the_same_records(kind_dir):
    text = "Café 🍕 <|im_end|>\t x"
    fast = core.tokenize(fast_view(kind_dir), text, "m")
    slow = core.tokenize(token_text.TokenizerView(hf_tokenizer(kind_dir)), text, "m")
    assert fast == slow


def test_special_tokens_are_split_unless_asked(tiny_model_dir):
    view = fast_view(tiny_model_dir)
    literal = core.tokenize(view, "<|im_end|>", "m")
    assert literal.count > 1 and not any(t.special for t in literal.tokens)
    parsed = core.tokenize(view, "<|im_end|>", "m", parse_special=True)
    assert [(t.piece, t.special) for t in parsed.tokens] == [("<|im_end|>", True)]


def test_bos_is_added_and_marked_special(spm_dir):
    hf = hf_tokenizer(spm_dir)
    result = core.tokenize(fast_view(spm_dir), "hello", "m")
    assert result.tokens[0].id == hf.bos_token_id and result.tokens[0].special
    assert result.tokens[0].text == "<bos>"
    assert core.tokenize(fast_view(spm_dir), "hello", "m", add_special=False).tokens[0].id != hf.bos_token_id


def test_byte_fallback_pieces_are_bytes(spm_dir):
    result = core.tokenize(fast_view(spm_dir), "🍕", "m", add_special=False)
    assert [t.piece for t in result.tokens] == ["<0xF0>", "<0x9F>", "<0x8D>", "<0x95>"]
    assert [t.text for t in result.tokens] == ["<0xF0>", "<0x9F>", "<0x8D>", "<0x95>"]
    assert not any(t.complete for t in result.tokens)
    assert core.spanning_characters(result.tokens) == {3: "🍕"}


def test_byte_level_partial_characters(tiny_model_dir):
    """An emoji the tiny vocabulary does not hold whole comes out as partial bytes, exactly."""
    result = core.tokenize(fast_view(tiny_model_dir), " 🦀", "m")
    assert b"".join(t.bytes for t in result.tokens) == " 🦀".encode()
    assert any(not t.complete for t in result.tokens)
    assert "<0xF0>" in "".join(t.text for t in result.tokens)
    assert list(core.spanning_characters(result.tokens).values()) == ["🦀"]


def test_empty_text_is_zero_tokens(tiny_model_dir):
    result = core.tokenize(fast_view(tiny_model_dir), "", "m")
    assert result.count == 0 and result.chars_per_token is None
    assert result.to_dict()["tokens"] == []


def test_json_shape(tiny_model_dir):
    data = core.tokenize(fast_view(tiny_model_dir), "Hello world", "tiny").to_dict()
    assert data["count"] == len(data["tokens"]) == len(hf_tokenizer(tiny_model_dir).encode("Hello world"))
    assert set(data["tokens"][0]) == {"index", "id", "piece", "text", "bytes", "special"}
    assert b"".join(bytes.fromhex(t["bytes"]) for t in data["tokens"]) == b"Hello world"
    assert [t["index"] for t in data["tokens"]] == list(range(data["count"]))
    assert data["chars_per_token"] == round(11 / data["count"], 3)


# ---------------------------------------------------------------- bytes and characters


@pytest.mark.parametrize(
    "data, text",
    [
        (b"abc", "abc"),
        ("é".encode(), "é"),
        (b"\xf0\x9f", "<0xF0><0x9F>"),
        (b" \xf0\x9f", " <0xF0><0x9F>"),
        (b"\x8d\x95", "<0x8D><0x95>"),
        (b"a\xffb", "a<0xFF>b"),
        (b"\xe2\x80", "<0xE2><0x80>"),
        ("日".encode()[:2] + b"x", "<0xE6><0x97>x"),
    ],
)
def test_bytes_to_text(data, text):
    assert token_text.bytes_to_text(data) == text


def test_spanning_characters_follow_partial_tokens():
    def toks(*chunks: bytes) -> list[token_text.Token]:
        return [token_text.Token(i, i, "", token_text.bytes_to_text(c), c, False) for i, c in enumerate(chunks)]

    pizza = "🍕".encode()
    assert core.spanning_characters(toks(b" " + pizza[:2], pizza[2:3], pizza[3:])) == {2: "🍕"}
    zwj = "👩\u200d👧".encode()  # F0 9F 91 A9 | E2 80 8D | F0 9F 91 A7
    # tokens: [F0 9F] [91 A9 E2] [80 8D] [F0 9F] [91 A7]
    assert core.spanning_characters(toks(zwj[:2], zwj[2:5], zwj[5:7], zwj[7:9], zwj[9:])) == {
        1: "👩",
        2: "\u200d",
        4: "👧",
    }
    assert core.spanning_characters(toks(b"ab", "é".encode())) == {}
    assert core.spanning_characters(toks(pizza[:2], b"x")) == {}  # never finished: nothing to show


# ---------------------------------------------------------------- detokenize


@pytest.mark.parametrize("text", HARD_CASES)
def test_detokenize_round_trip(kind_dir, text):
    view = fast_view(kind_dir)
    hf = hf_tokenizer(kind_dir)
    ids = view.encode(text, add_special=False)
    result = core.detokenize(view, ids, "m")
    assert result.text == text == hf.decode(ids)
    assert result.incomplete == ()
    with_bos = view.encode(text)
    assert core.detokenize(view, with_bos, "m", skip_special=True).text == text


def test_detokenize_flags_unfinished_characters(spm_dir):
    view = fast_view(spm_dir)
    ids = view.encode("a🍕", add_special=False)
    result = core.detokenize(view, ids[:-1], "m")
    assert result.incomplete == tuple(range(1, len(ids) - 1))
    assert result.text.endswith("\ufffd")  # transformers' decode; the CLI warns about it


@pytest.mark.parametrize("bad", [-1, 10**9])
def test_out_of_vocabulary_id_is_named(tiny_model_dir, bad):
    with pytest.raises(BadInput) as e:
        core.detokenize(fast_view(tiny_model_dir), [5, bad], "tiny")
    assert str(bad) in e.value.message and "tiny" in e.value.message
    assert "ids run from 0 to" in e.value.hint


@pytest.mark.parametrize(
    "words, ids",
    [
        (["1", "2", "3"], [1, 2, 3]),
        (["1,2,3"], [1, 2, 3]),
        (["[1, 2, 3]"], [1, 2, 3]),
        (["  7\n8\t9 \n"], [7, 8, 9]),
        ([""], []),
    ],
)
def test_parse_ids(words, ids):
    assert core.parse_ids(words) == ids


@pytest.mark.parametrize("word", ["abc", "1.5", "12x"])
def test_parse_ids_names_the_bad_word(word):
    with pytest.raises(BadInput) as e:
        core.parse_ids(["1", word])
    assert repr(word) in e.value.message or f"'{word}'" in e.value.message


# ---------------------------------------------------------------- the chat x-ray


def _chat(tokenizer, text: str, system: str | None = None) -> core.ChatTokenization:
    from llmcli.prompting import Message, build_chat_prompt

    messages = ([Message("system", system)] if system else []) + [Message("user", text)]
    prompt = build_chat_prompt(tokenizer, messages)
    return core.chat_tokenization(
        token_text.TokenizerView(tokenizer), prompt.text, prompt.ids, [(m.role, m.content) for m in messages], "m", prompt.mode
    )


def test_chat_marks_template_and_message_tokens(tiny_model_dir):
    hf = hf_tokenizer(tiny_model_dir)
    chat = _chat(hf, "Hello there", system="Be brief.")
    expected = hf.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert chat.tokenization.text == expected
    assert chat.tokenization.ids == hf.encode(expected, add_special_tokens=False)
    user = "".join(t.text for t, p in zip(chat.tokenization.tokens, chat.parts) if p == "user")
    system = "".join(t.text for t, p in zip(chat.tokenization.tokens, chat.parts) if p == "system")
    assert (user, system) == ("Hello there", "Be brief.")
    message_tokens = len(hf.encode("Hello there")) + len(hf.encode("Be brief."))
    assert chat.message_tokens == message_tokens
    assert chat.added == chat.tokenization.count - message_tokens
    specials = [t.text for t in chat.tokenization.tokens if t.special]
    assert specials == ["<|im_start|>", "<|im_end|>", "<|im_start|>", "<|im_end|>", "<|im_start|>"]
    assert chat.to_dict()["template_tokens"] == chat.added


def test_chat_on_a_base_model_uses_the_plain_template(tiny_base_dir):
    chat = _chat(hf_tokenizer(tiny_base_dir), "Hi")
    assert chat.mode == "template"
    assert "User: Hi" in chat.tokenization.text
    assert "user" in chat.parts or "mixed" in chat.parts
