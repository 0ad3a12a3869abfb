"""The tokenizer and chat template of a model directory, without transformers.

    tokenizer = load_tokenizer(model_dir)
    tokenizer.encode("Hello")                      # == AutoTokenizer's tokenizer("Hello").input_ids
    tokenizer.apply_chat_template(messages, add_generation_prompt=True)

transformers 5 reads `tokenizer.json` with the same `tokenizers` library; AutoTokenizer's seconds go
to importing transformers and, for some tokenizer classes, to rebuilding the tokenizer in Python.
We load the file directly (0.1 s for Gemma's 262k tokens) and set it up as `TokenizersBackend`
does:

- BOS/EOS come from tokenizer.json's post-processor. transformers drops `add_bos_token` /
  `add_eos_token` from tokenizer_config.json when tokenizer.json exists, so the file decides:
  Gemma's adds `<bos>`, SmolLM2's adds nothing. A file with no post-processor adds nothing.
- The named special tokens of tokenizer_config.json (bos, eos, unk, sep, pad, cls, mask), its
  `extra_special_tokens` and `added_tokens_decoder` are registered as added tokens the way
  transformers registers them (special, not normalized), so they are matched whole in text and
  skipped by `decode(skip_special_tokens=True)`.
- `split_special_tokens`: by default (False, as in transformers) special-token text in the input
  is parsed as those tokens; with True it is encoded as plain text, as llama.cpp does.

Which tokenizer class AutoTokenizer picks matters, because some classes rebuild the pipeline
from the vocabulary instead of trusting the file: Qwen2Tokenizer (its own regex and NFC) and
GemmaTokenizer. For those we check that tokenizer.json's pipeline is exactly what the class
builds, and raise `UnsupportedModel` if not (so does any other class that rebuilds: Llama's
SentencePiece one, GPT-2's...); the caller then uses AutoTokenizer. The choice of class follows
`AutoTokenizer.from_pretrained` for the model types the engine runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmcli.engine.chat_template import render_chat
from llmcli.engine.config import UnsupportedModel

SPECIAL_TOKEN_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_AS_IS = {"TokenizersBackend", "PreTrainedTokenizer", "PythonBackend"}  # "...Fast" suffixes are dropped first
# transformers' TOKENIZER_MAPPING_NAMES for our model types, and the ones it overrides a hub class for
_REGISTERED = {"gemma3": "GemmaTokenizer", "gemma3_text": "GemmaTokenizer", "qwen2": "Qwen2Tokenizer", "qwen3": "Qwen2Tokenizer"}
_HUB_CLASS_KNOWN_WRONG = {"qwen2"}
QWEN2_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class EngineTokenizer:
    def __init__(self, backend, config: dict[str, Any], chat_template: str | dict[str, str] | None):
        from tokenizers import AddedToken

        self.backend = backend
        self.chat_template = chat_template
        self.split_special_tokens = bool(config.get("split_special_tokens", False))
        present = {t.content: t for t in backend.get_added_tokens_decoder().values()}
        for token in (config.get("added_tokens_decoder") or {}).values():
            if token["content"] not in present:
                token = {k: v for k, v in token.items() if k != "__type"}
                (backend.add_special_tokens if token.get("special") else backend.add_tokens)([AddedToken(**token)])
        self.special_tokens: dict[str, str] = {}
        for attr in SPECIAL_TOKEN_ATTRIBUTES:
            if (value := _token_text(config.get(attr))) is not None:
                self.special_tokens[attr] = value
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        extra = [_token_text(t) for t in (extra.values() if isinstance(extra, dict) else extra)]
        named = []
        for content in dict.fromkeys([*self.special_tokens.values(), *extra]):
            named.append(present.get(content) or AddedToken(content, special=True, normalized=False))
        # This makes each of them special (a file's plain added token too), as transformers' _post_init
        # does. One known difference: transformers leaves a named token plain when tokenizer_config.json
        # has an added_tokens_decoder that omits it.
        backend.add_special_tokens(named)
        # transformers' all_special_ids: the named and extra special tokens (not every special added token)
        self._special_ids = {backend.token_to_id(t.content) for t in named}
        if backend.post_processor is None:  # transformers then writes one that adds nothing
            from tokenizers import processors

            backend.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])

    # -- special tokens, as attributes the way transformers names them
    def __getattr__(self, name: str):
        if name in SPECIAL_TOKEN_ATTRIBUTES:
            return self.special_tokens.get(name)
        if name.endswith("_token_id") and name[: -len("_id")] in SPECIAL_TOKEN_ATTRIBUTES:
            text = self.special_tokens.get(name[: -len("_id")])
            return None if text is None else self.backend.token_to_id(text)
        raise AttributeError(name)

    @property
    def all_special_ids(self) -> list[int]:
        return sorted(self._special_ids)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    # -- what llmcli's prompt builder and token views ask of a transformers tokenizer
    def __call__(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool | None = None) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens, split_special_tokens=split_special_tokens)}

    @property
    def _tokenizer(self):  # transformers' name for the `tokenizers` object underneath
        return self.backend

    @property
    def added_tokens_decoder(self) -> dict:
        return self.backend.get_added_tokens_decoder()

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    # -- text <-> ids
    def encode(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool | None = None) -> list[int]:
        self.backend.encode_special_tokens = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = False) -> str:
        ids = [ids] if isinstance(ids, int) else list(ids)
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(i) for i in ids]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    # -- chat
    def get_chat_template(self, tools: list | None = None) -> str:
        template = self.chat_template
        if isinstance(template, dict):
            name = "tool_use" if tools is not None and "tool_use" in template else "default"
            if name not in template:
                raise ValueError(f"several chat templates and no default: {sorted(template)}")
            template = template[name]
        if template is None:
            raise ValueError("this tokenizer has no chat template")
        return template

    def apply_chat_template(
        self, messages, *, add_generation_prompt: bool = False, tools=None, documents=None, **variables
    ) -> str:
        """The rendered prompt text (transformers' `apply_chat_template(..., tokenize=False)`).
        Tokenize it with `encode(text, add_special_tokens=False)`, as transformers does."""
        template = self.get_chat_template(tools)
        return render_chat(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=documents,
            **{**self.special_tokens, **variables},
        )


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def read_chat_template(model_dir: Path, config: dict[str, Any]) -> str | dict[str, str] | None:
    """As transformers 5: `chat_template.jinja` (plus `additional_chat_templates/*.jinja`, making a
    dict of named templates) wins over the `chat_template` entry of tokenizer_config.json."""
    model_dir = Path(model_dir)
    templates = {}
    if (model_dir / "chat_template.jinja").is_file():
        templates["default"] = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    extra = model_dir / "additional_chat_templates"
    if extra.is_dir():
        for file in sorted(extra.glob("*.jinja")):
            templates[file.name.removesuffix(".jinja")] = file.read_text(encoding="utf-8")
    if list(templates) == ["default"]:
        return templates["default"]
    if templates:
        return templates
    saved = config.get("chat_template")
    if isinstance(saved, list):  # older saves: [{"name": ..., "template": ...}, ...]
        return {t["name"]: t["template"] for t in saved}
    return saved


def tokenizer_class(tokenizer_config: dict[str, Any], model_type: str | None) -> str:
    """The class AutoTokenizer instantiates, for the cases the engine meets (no remote code)."""
    hub = (tokenizer_config.get("tokenizer_class") or "TokenizersBackend").removesuffix("Fast")
    registered = _REGISTERED.get(model_type or "")
    if registered is not None and hub != registered and model_type in _HUB_CLASS_KNOWN_WRONG:
        return registered
    return hub


def _check_pipeline(name: str, backend, config: dict[str, Any]) -> None:
    """Raise unless `backend` (from tokenizer.json) is the pipeline transformers' `name` class builds."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    model = backend.model
    if name == "GemmaTokenizer":
        expected = (
            normalizers.Replace(" ", "▁"),
            pre_tokenizers.Split(" ", "merged_with_previous", invert=False),
            decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]),
            (True, True, _token_text(config.get("unk_token", "<unk>")), None),
        )
    elif name == "Qwen2Tokenizer":
        prefix_space = bool(config.get("add_prefix_space") or False)
        expected = (
            normalizers.NFC(),
            pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=prefix_space, use_regex=False),
                ]
            ),
            decoders.ByteLevel(),
            (False, False, None, None),
        )
    else:
        raise UnsupportedModel(f"tokenizer class {name} (transformers rebuilds it; the engine reads tokenizer.json)")
    found = (backend.normalizer, backend.pre_tokenizer, backend.decoder)
    same = all(f is not None and f.__getstate__() == e.__getstate__() for f, e in zip(found, expected))
    flags = (model.byte_fallback, model.fuse_unk, model.unk_token, model.dropout)
    if not same or type(model).__name__ != "BPE" or flags != expected[3] or model.ignore_merges:
        raise UnsupportedModel(f"tokenizer.json's pipeline differs from the one transformers' {name} builds")


def load_tokenizer(model_dir: Path) -> EngineTokenizer:
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise UnsupportedModel(f"no tokenizer.json in {model_dir}")
    config = _read_json(model_dir / "tokenizer_config.json")
    model_type = _read_json(model_dir / "config.json").get("model_type")
    backend = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    name = tokenizer_class(config, model_type)
    if name == "LlamaTokenizer" and backend.pre_tokenizer and b"ByteLevel" in backend.pre_tokenizer.__getstate__():
        name = "TokenizersBackend"  # AutoTokenizer's own exception: Llama 3 style byte-level files
    if name not in _AS_IS:
        _check_pipeline(name, backend, config)
    if type(backend.model).__name__ != "BPE":
        raise UnsupportedModel("a non-BPE tokenizer (transformers may clean up its decoded spaces)")
    return EngineTokenizer(backend, config, read_chat_template(model_dir, config))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
