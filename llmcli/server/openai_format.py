"""llmcli's results in the shapes OpenAI's API (and vLLM's tokenize) use. Pure: data in, dicts out.

- A chat token's logprobs are OpenAI's `{"token", "logprob", "bytes", "top_logprobs"}`
  (`llmcli.api.response.logprob_entry`), plus the token `id`, as llama.cpp's server adds it:
  with it a client can tell apart two tokens that decode to the same text.
- The legacy completions shape is `{"tokens", "token_logprobs", "top_logprobs",
  "text_offset"}`; its `top_logprobs` are dicts keyed by token text, so two alternatives
  that decode alike keep the more likely one (as OpenAI's do). Beside those lists goes
  `content`, the same tokens in the chat shape with ids and bytes (llama.cpp answers
  /v1/completions in that shape): clients that read the legacy lists ignore it, and
  llmcli's remote backend reads it to tell tokens apart.
- The end-of-turn token that stopped a reply is counted in `usage` (it was computed) but
  has no entry in `logprobs`, as in OpenAI's responses: it is not part of the text.
- `timings` is llama.cpp's block (prompt and predicted counts, milliseconds, tokens per
  second), so a client can show the server's own speeds.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Iterable

from llmcli.api.logprobs import TokenLogprob
from llmcli.api.response import logprob_entry
from llmcli.generation import GenerationStats, TokenEvent


def request_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(stats: GenerationStats | None, prompt_tokens: int, completion_tokens: int = 0) -> dict[str, int]:
    if stats is not None:
        prompt_tokens, completion_tokens = stats.prompt_tokens, stats.generated_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def timings(stats: GenerationStats) -> dict[str, float]:
    prefill = stats.time_to_first_token
    decode = max(stats.total_seconds - prefill, 0.0)
    return {
        "prompt_n": stats.prompt_tokens,
        "prompt_ms": 1000 * prefill,
        "prompt_per_second": stats.prefill_tokens_per_second,
        "predicted_n": stats.generated_tokens,
        "predicted_ms": 1000 * decode,
        "predicted_per_second": stats.decode_tokens_per_second,
    }


def finish_reason(stats: GenerationStats) -> str:
    return "length" if stats.finish_reason == "length" else "stop"


# ---------------------------------------------------------------- chat


def chat_logprob(tokenizer: Any, event: TokenEvent) -> dict[str, Any]:
    entry = logprob_entry(tokenizer, event)
    entry["id"] = event.id
    for alternative, (token_id, _piece, _logprob) in zip(entry["top_logprobs"], event.top):
        alternative["id"] = token_id
    return entry


def chat_completion(name: str, rid: str, text: str, events: list[TokenEvent], stats: GenerationStats, tokenizer: Any, logprobs: bool) -> dict[str, Any]:
    content = [chat_logprob(tokenizer, e) for e in events if not e.end] if logprobs else None
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": {"content": content} if logprobs else None,
                "finish_reason": finish_reason(stats),
            }
        ],
        "usage": usage(stats, 0),
        "timings": timings(stats),
    }


def chat_chunk(name: str, rid: str, delta: dict[str, Any], *, logprobs: list[dict] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": name,
        "choices": [{"index": 0, "delta": delta, "logprobs": None if logprobs is None else {"content": logprobs}, "finish_reason": finish}],
    }


def usage_chunk(name: str, rid: str, stats: GenerationStats, kind: str = "chat.completion.chunk") -> dict[str, Any]:
    return {"id": rid, "object": kind, "created": int(time.time()), "model": name, "choices": [], "usage": usage(stats, 0), "timings": timings(stats)}


# ---------------------------------------------------------------- completions (legacy)


def legacy_logprobs(entries: Iterable[TokenLogprob], start_offset: int = 0) -> dict[str, list]:
    """OpenAI's legacy logprobs block; `text_offset` counts characters from the start of the returned text."""
    entries = list(entries)
    tokens, token_logprobs, top_logprobs, offsets = [], [], [], []
    offset = start_offset
    for entry in entries:
        tokens.append(entry.text)
        token_logprobs.append(entry.logprob)
        top: dict[str, float] | None = None
        if entry.logprob is not None:
            top = {}
            for alternative in entry.top:
                top.setdefault(alternative.text, alternative.logprob)
        top_logprobs.append(top)
        offsets.append(offset)
        offset += len(entry.text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": offsets, "content": [e.to_dict() for e in entries]}


def generated_logprobs(tokenizer: Any, events: Iterable[TokenEvent]) -> list[TokenLogprob]:
    """A generation's tokens (the end token left out) as TokenLogprobs."""
    from llmcli.tokens import token_bytes

    def token(token_id: int, logprob: float) -> TokenLogprob:
        text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return TokenLogprob(token_id, text, token_bytes(tokenizer, token_id), logprob)

    return [
        TokenLogprob(e.id, (t := token(e.id, e.logprob)).text, t.bytes, e.logprob, tuple(token(i, lp) for i, _p, lp in e.top))
        for e in events
        if not e.end
    ]


def completion(name: str, rid: str, text: str, logprobs: dict | None, finish: str, usage_block: dict, extra: dict | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": name,
        "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        "usage": usage_block,
        **(extra or {}),
    }


def completion_chunk(name: str, rid: str, text: str, *, logprobs: dict | None = None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": name,
        "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
    }


def piece(token_id: int, data: bytes) -> dict[str, Any]:
    """llama.cpp's /tokenize `with_pieces` entry: the piece as text, or its bytes when it is not UTF-8."""
    try:
        return {"id": token_id, "piece": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"id": token_id, "piece": list(data)}


# ---------------------------------------------------------------- models, errors


def model_card(name: str, model: Any, created: int) -> dict[str, Any]:
    """OpenAI's model object, vLLM's `max_model_len`, and the sampling values the server uses
    for fields a request leaves out (so `llmcli -m openai:…` samples as the local model would)."""
    return {"id": name, "object": "model", "created": created, "owned_by": "llmcli", "max_model_len": model.context_length, "sampling_defaults": model.recommended_sampling()}


def error(message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
