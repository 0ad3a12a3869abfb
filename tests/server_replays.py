"""Responses in the shapes vLLM, llama.cpp's server and Ollama document, for the fixture server.

Each replay is a handler `(method, path, body) -> Reply` answering the endpoints llmcli's
remote backend calls, in that server's shape, with the numbers written here (so a test
knows exactly what a correct parse gives). Shapes follow each project's documentation:
- vLLM (docs.vllm.ai, the OpenAI-compatible server; vllm/entrypoints/.../protocol.py):
  `max_model_len` in /v1/models; /tokenize `{"count", "max_model_len", "tokens",
  "token_strs"}` (vocabulary strings: "Ġcapital"); /detokenize `{"prompt"}`; legacy
  completions logprobs; `prompt_logprobs` (+ `prompt_token_ids`) on an echoed completion;
- llama.cpp (tools/server/README.md): `meta.n_ctx_train` in /v1/models; /tokenize with
  `with_pieces` `{"tokens": [{"id", "piece"}]}` (bytes as a list when not UTF-8);
  /detokenize `{"content"}`; logprob entries with `id`; /v1/completions logprobs in the
  chat shape `{"content": [...]}`;
- Ollama (docs/openai.md): /v1/models without a context length; no /tokenize (404
  "404 page not found", Go's default); chat logprobs in OpenAI's shape; a completion
  that carries no logprobs.
"""

from __future__ import annotations

import math

from tests.fixture_server import Reply

PARIS = [32, 80, 97, 114, 105, 115]  # " Paris"


def entry(token: str, logprob: float, data: list[int] | None = None, token_id: int | None = None) -> dict:
    out = {"token": token, "logprob": logprob, "bytes": data if data is not None else list(token.encode())}
    return out | ({"id": token_id} if token_id is not None else {})


# The next token after "The capital of France is", five candidates (servers may return fewer
# than asked): one of them half a character (" " and the first two bytes of "—").
TOP = [
    (" Paris", -0.0312, PARIS, 12366),
    (" a", -4.21, None, 264),
    (" the", -5.02, None, 279),
    (" located", -6.5, None, 7559),
    (" \ufffd", -9.1, [32, 226, 128], 2001),
]


def top(with_ids: bool) -> list[dict]:
    return [entry(t, lp, b, i if with_ids else None) for t, lp, b, i in TOP]


def chat_completion(model: str, with_ids: bool, usage: tuple[int, int] = (14, 1)) -> dict:
    first = entry(" Paris", -0.0312, PARIS, 12366 if with_ids else None) | {"top_logprobs": top(with_ids)}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1730000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " Paris"}, "logprobs": {"content": [first]}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def chat_stream(model: str) -> list:
    def chunk(delta: dict, finish: str | None = None, logprobs: list | None = None) -> dict:
        return {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1730000000, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None if logprobs is None else {"content": logprobs}, "finish_reason": finish}]}

    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": " Paris"}),
        chunk({"content": "."}),
        chunk({}, "stop"),
        {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1730000000, "model": model, "choices": [], "usage": {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17}},
        "[DONE]",
    ]


# ---------------------------------------------------------------- vLLM

VLLM_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
VLLM_PROMPT_IDS = [128000, 791, 6864, 315, 9822, 374]
VLLM_PROMPT_STRS = ["<|begin_of_text|>", "The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]


def vllm(method: str, path: str, body: dict) -> Reply:
    if path == "/v1/models":
        return Reply(body={"object": "list", "data": [{"id": VLLM_MODEL, "object": "model", "created": 1730000000, "owned_by": "vllm", "root": VLLM_MODEL, "parent": None, "max_model_len": 131072}]})
    if path == "/tokenize":
        return Reply(body={"count": 6, "max_model_len": 131072, "tokens": VLLM_PROMPT_IDS, "token_strs": VLLM_PROMPT_STRS if body.get("return_token_strs") else None})
    if path == "/detokenize":
        return Reply(body={"prompt": "The capital of France is"})
    if path == "/v1/chat/completions":
        return Reply(events=chat_stream(VLLM_MODEL)) if body.get("stream") else Reply(body=chat_completion(VLLM_MODEL, with_ids=False))
    if path == "/v1/completions":
        if body.get("echo"):  # the prompt's own logprobs: legacy lists and vLLM's prompt_logprobs
            prompt_logprobs = [None] + [{str(i): {"logprob": lp, "rank": 1, "decoded_token": t}} for i, lp, t in zip(VLLM_PROMPT_IDS[1:], (-9.5, -7.25, -0.5, -2.0, -1.5), ("The", " capital", " of", " France", " is"))]
            return Reply(body={"id": "cmpl-3", "object": "text_completion", "created": 1730000000, "model": VLLM_MODEL,
                               "choices": [{"index": 0, "text": "The capital of France is Paris", "prompt_logprobs": prompt_logprobs, "prompt_token_ids": VLLM_PROMPT_IDS,
                                            "logprobs": {"tokens": ["<|begin_of_text|>", "The", " capital", " of", " France", " is", " Paris"], "token_logprobs": [None, -9.5, -7.25, -0.5, -2.0, -1.5, -0.03], "top_logprobs": [None] + [{}] * 6, "text_offset": [0, 0, 3, 11, 14, 21, 24]},
                                            "finish_reason": "length"}],
                               "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}})
        legacy = {"tokens": [" Paris"], "token_logprobs": [-0.0312], "top_logprobs": [{t: lp for t, lp, _b, _i in TOP}], "text_offset": [24]}
        return Reply(body={"id": "cmpl-4", "object": "text_completion", "created": 1730000000, "model": VLLM_MODEL,
                           "choices": [{"index": 0, "text": " Paris", "logprobs": legacy, "finish_reason": "length"}], "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}})
    return Reply(404, {"object": "error", "message": "Not Found", "type": "NotFoundError", "code": 404})


# ---------------------------------------------------------------- llama.cpp's server

LLAMACPP_MODEL = "SmolLM2-135M-Instruct-Q4_1.gguf"
LLAMACPP_PIECES = [{"id": 504, "piece": "The"}, {"id": 3575, "piece": " capital"}, {"id": 216, "piece": " "}, {"id": 198, "piece": [195]}, {"id": 164, "piece": [161]}]  # "The capital á"


def llamacpp(method: str, path: str, body: dict) -> Reply:
    if path == "/v1/models":
        return Reply(body={"object": "list", "data": [{"id": LLAMACPP_MODEL, "object": "model", "created": 1735142223, "owned_by": "llamacpp",
                                                       "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_embd": 576, "n_params": 134515008, "size": 98654720}}]})
    if path == "/tokenize":
        pieces = LLAMACPP_PIECES if body.get("with_pieces") else [p["id"] for p in LLAMACPP_PIECES]
        return Reply(body={"tokens": pieces})
    if path == "/detokenize":
        return Reply(body={"content": "The capital á"})
    if path == "/v1/chat/completions":
        return Reply(events=chat_stream(LLAMACPP_MODEL)) if body.get("stream") else Reply(body=chat_completion(LLAMACPP_MODEL, with_ids=True))
    if path == "/v1/completions":  # llama.cpp answers completions in the chat shape, with ids
        first = entry(" Paris", -0.0312, PARIS, 12366) | {"top_logprobs": top(True)}
        return Reply(body={"id": "cmpl-5", "object": "text_completion", "created": 1735142223, "model": LLAMACPP_MODEL,
                           "choices": [{"index": 0, "text": " Paris", "logprobs": {"content": [first]}, "finish_reason": "length"}], "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}})
    return Reply(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})


# ---------------------------------------------------------------- Ollama

OLLAMA_MODEL = "llama3.2:latest"


def ollama(method: str, path: str, body: dict) -> Reply:
    if path == "/v1/models":
        return Reply(body={"object": "list", "data": [{"id": OLLAMA_MODEL, "object": "model", "created": 1730000000, "owned_by": "library"}]})
    if path == "/v1/chat/completions":
        return Reply(events=chat_stream(OLLAMA_MODEL)) if body.get("stream") else Reply(body=chat_completion(OLLAMA_MODEL, with_ids=False))
    if path == "/v1/completions":  # a completion that carries no logprobs
        return Reply(body={"id": "cmpl-6", "object": "text_completion", "created": 1730000000, "model": OLLAMA_MODEL,
                           "choices": [{"index": 0, "text": " Paris", "finish_reason": "length"}], "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}})
    return Reply(404, "404 page not found")


# ---------------------------------------------------------------- the native endpoints' variants (parsed, not served)

LLAMACPP_COMPLETION = {  # POST /completion with n_probs: the README's `probs` entries
    "content": " Paris",
    "probs": [{"id": 12366, "logprob": -0.0312, "token": " Paris", "bytes": PARIS, "top_logprobs": top(True)}],
}
LLAMACPP_OLD_COMPLETION = {"content": " Paris", "completion_probabilities": LLAMACPP_COMPLETION["probs"]}
OLLAMA_GENERATE = {  # POST /api/generate with logprobs: the top-level list
    "model": OLLAMA_MODEL, "response": " Paris", "done": True,
    "logprobs": [{"token": " Paris", "logprob": -0.0312, "bytes": PARIS, "top_logprobs": top(False)}],
}


def probability(logprob: float) -> float:
    return math.exp(logprob)
