"""What OpenAI-compatible servers answer, read into llmcli's shapes. Pure: JSON in, data out.

Servers agree on the chat endpoint and differ everywhere else. Each reader here takes every
variant the servers document and gives one shape back (`TokenLogprob`s, token ids and
pieces, a context length), so the remote backend never looks at which server it talks to:

- chat logprobs, `{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}`: OpenAI,
  vLLM, llama.cpp's server (which adds `"id"`), Ollama, llmcli serve (adds `"id"`);
  vLLM's `--return-tokens-as-token-ids` writes tokens as `"token_id:123"`;
- legacy completions logprobs, `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`:
  OpenAI, vLLM, llmcli serve; llama.cpp answers /v1/completions in the chat shape;
- vLLM's `prompt_logprobs`: per prompt token `None` or `{"<id>": {"logprob", "rank", "decoded_token"}}`;
- llama.cpp's own /completion: `completion_probabilities` (or `probs`) entries with `id`,
  `token`, `logprob`, `bytes`, `top_logprobs`;
- Ollama's own /api/generate and /api/chat: a top-level `logprobs` list in the chat shape;
- /tokenize: vLLM's `{"tokens": [ids], "token_strs"}` and llama.cpp's
  `{"tokens": [{"id", "piece"}]}` (a piece is text, or a list of bytes when it is not
  valid UTF-8); /detokenize: vLLM's `{"prompt"}`, llama.cpp's `{"content"}`;
- a model's context length: vLLM's and llmcli's `max_model_len`, llama.cpp's `meta.n_ctx_train`.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from llmcli.api.logprobs import TokenLogprob

_TOKEN_ID = re.compile(r"token_id:(\d+)")


def _token(entry: dict[str, Any], *, with_top: bool = True) -> TokenLogprob:
    text = entry.get("token", entry.get("tok_str", ""))
    token_id = entry.get("id")
    if token_id is None and (match := _TOKEN_ID.fullmatch(text or "")):
        token_id, text = int(match.group(1)), None
    raw = entry.get("bytes")
    data = bytes(raw) if isinstance(raw, list) else None
    if text is None:
        text = data.decode("utf-8", errors="replace") if data is not None else ""
    logprob = entry.get("logprob")
    top = tuple(_token(t, with_top=False) for t in (entry.get("top_logprobs") or [])) if with_top else ()
    return TokenLogprob(token_id, text, data, None if logprob is None else float(logprob), top)


def chat_logprobs(block: dict[str, Any] | list | None) -> list[TokenLogprob]:
    """`choice["logprobs"]` of a chat completion (or chunk), or Ollama's top-level list."""
    if block is None:
        return []
    entries = block if isinstance(block, list) else block.get("content") or []
    return [_token(e) for e in entries]


def completion_logprobs(block: dict[str, Any] | None) -> list[TokenLogprob]:
    """`choice["logprobs"]` of a completion: the legacy lists, or llama.cpp's chat-shaped content."""
    if not block:
        return []
    if "content" in block:
        return chat_logprobs(block)
    tokens = block.get("tokens") or []
    logprobs = block.get("token_logprobs") or [None] * len(tokens)
    tops = block.get("top_logprobs") or [None] * len(tokens)
    out = []
    for text, logprob, top in zip(tokens, logprobs, tops):
        alternatives = tuple(
            TokenLogprob(None, t, None, float(v)) for t, v in sorted((top or {}).items(), key=lambda item: -item[1])
        )
        token = _token({"token": text, "logprob": logprob})
        out.append(TokenLogprob(token.id, token.text, None, token.logprob, alternatives))
    return out


def vllm_prompt_logprobs(entries: list[dict | None], prompt_ids: list[int]) -> list[TokenLogprob]:
    """vLLM's `prompt_logprobs`: the logprob of each prompt token and the best others at its
    position (vLLM includes the actual token among them; it is left out of `top` unless it ranks there)."""
    out = []
    for token_id, entry in zip(prompt_ids, entries):
        if entry is None:
            out.append(TokenLogprob(token_id, "", None, None))
            continue
        ranked = sorted(((int(k), v) for k, v in entry.items()), key=lambda kv: (kv[1].get("rank") or 1 << 30, -kv[1]["logprob"]))
        own = entry.get(str(token_id)) or {}
        count = max(len(entry) - 1, 1)
        top = tuple(TokenLogprob(i, v.get("decoded_token") or "", None, float(v["logprob"])) for i, v in ranked[:count])
        out.append(TokenLogprob(token_id, own.get("decoded_token") or "", None, own.get("logprob"), top))
    return out


def llamacpp_probabilities(body: dict[str, Any]) -> list[TokenLogprob]:
    """llama.cpp's own /completion: `completion_probabilities` (older name) or `probs`."""
    return [_token(e) for e in body.get("completion_probabilities") or body.get("probs") or []]


def tokens(body: dict[str, Any]) -> tuple[list[int], list[bytes | str | None], list[str | None]]:
    """/tokenize: the ids, what is known of each token's bytes (llama.cpp's pieces, exact;
    else vLLM's vocabulary string, "Ġworld", or None), and the vocabulary strings when
    given (both come from llmcli serve)."""
    raw = body.get("tokens") or []
    strs = body.get("token_strs")
    if raw and isinstance(raw[0], dict):
        ids = [int(t["id"]) for t in raw]
        pieces: list[bytes | str | None] = [bytes(p) if isinstance(p := t.get("piece"), list) else (p.encode("utf-8") if isinstance(p, str) else None) for t in raw]
        return ids, pieces, list(strs) if strs else [None] * len(ids)
    ids = [int(t) for t in raw]
    return ids, list(strs) if strs else [None] * len(ids), list(strs) if strs else [None] * len(ids)


def detokenized(body: dict[str, Any]) -> str:
    for key in ("prompt", "content", "text"):
        if isinstance(body.get(key), str):
            return body[key]
    raise KeyError("no text in the /detokenize answer")


def context_length(card: dict[str, Any]) -> int | None:
    for value in (card.get("max_model_len"), (card.get("meta") or {}).get("n_ctx_train"), card.get("context_length"), card.get("context_window")):
        if isinstance(value, int) and value > 0:
            return value
    return None


def sampling_defaults(card: dict[str, Any]) -> dict[str, float]:
    """llmcli serve's `sampling_defaults`: the values it uses for fields a request leaves out."""
    known = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
    values = card.get("sampling_defaults")
    return {k: v for k, v in values.items() if k in known and isinstance(v, (int, float))} if isinstance(values, dict) else {}


def model_ids(body: dict[str, Any]) -> list[str]:
    return [str(m.get("id")) for m in body.get("data") or [] if isinstance(m, dict)]


def server_timings(body: dict[str, Any]) -> tuple[float, float] | None:
    """(prefill, decode) tokens per second from llama.cpp's (and llmcli serve's) `timings`."""
    t = body.get("timings")
    if not isinstance(t, dict):
        return None
    return float(t.get("prompt_per_second") or 0.0), float(t.get("predicted_per_second") or 0.0)


def join_text(entries: Iterable[TokenLogprob]) -> str:
    return "".join(e.text for e in entries)
