"""Chat templates rendered with jinja2 the way transformers 5 renders them, without importing it.

    render_chat(template, messages, add_generation_prompt=True, bos_token="<bos>", eos_token="<eos>")

This mirrors `transformers.utils.chat_template_utils` (`_cached_compile_jinja_template`,
`render_jinja_template`) and `apply_chat_template(..., tokenize=False)`:

- an `ImmutableSandboxedEnvironment` with `trim_blocks` and `lstrip_blocks` (the whitespace rules
  templates are written for) and the `loopcontrols` extension (`{% break %}`, `{% continue %}`);
- the `{% generation %}...{% endgeneration %}` tag templates use to mark assistant text; here it
  only renders its body (the tracking is for `return_assistant_tokens_mask`, which we lack);
- `tojson` replaced by `json.dumps` with `ensure_ascii=False` (jinja's own escapes HTML), and
  globals `raise_exception` (a TemplateError with the template's message), `strftime_now`
  (local time), a `dict` that only builds dicts, and a `namespace` refusing `_`-names;
- the inputs copied to plain JSON types first, keys whose value is None dropped from each
  message, and `reasoning_content` / `thinking` / `reasoning` aliased to one another;
- the tokenizer's named special tokens (`bos_token`, `eos_token`, ...) as variables, which the
  caller's keyword arguments override.

Not supported (transformers has them): `continue_final_message`, tools given as Python functions
(pass their JSON schemas), `return_assistant_tokens_mask`, `sanitize_control_tokens`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


@lru_cache
def compile_template(source: str):
    """The template compiled in transformers' environment (cached: chat loops render it every turn)."""
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):  # jinja's own signature trick, so that namespace(self=...) works
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a namespace cannot hold underscore-prefixed names: {name!r}")

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda format: datetime.now().strftime(format)
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env.from_string(source)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message):
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


class _TemplateDict:
    """`dict(...)` and `dict.fromkeys(...)` for templates, without the type's other attributes."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


def plain(value: Any) -> Any:
    """A copy made of JSON types only; anything else becomes a placeholder naming its type, e.g.
    "<Tensor>" (the sandbox does not know which methods of arbitrary objects are harmless)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return f"<{type(value).__name__}>"


def _prepare(messages: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    chat = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise TypeError(f"chat messages must be dicts, got {message!r}")
        message = plain({k: v for k, v in message.items() if v is not None})
        reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        chat.append(message)
    return chat


def render_chat(
    template: str,
    messages: list[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = False,
    tools: list[dict] | None = None,
    documents: list[dict] | None = None,
    **variables: Any,
) -> str:
    """The prompt text `template` makes of `messages`. `variables` (special tokens, `enable_thinking`,
    ...) become template variables, as `apply_chat_template`'s keyword arguments do."""
    if not messages:
        raise ValueError("cannot apply a chat template to an empty conversation")
    if tools is not None and not all(isinstance(t, Mapping) for t in tools):
        raise TypeError("tools must be JSON schemas (dicts)")
    if documents is not None and not all(isinstance(d, Mapping) for d in documents):
        raise TypeError("documents must be dicts with 'title' and 'text' keys")
    return compile_template(template).render(
        messages=_prepare(messages),
        tools=plain(tools),
        documents=plain(documents),
        add_generation_prompt=add_generation_prompt,
        **plain(variables),
    )
