"""`llmcli serve` on the tiny model, started in a subprocess: what each endpoint returns.

Every expected number is computed here, independently of llmcli: greedy tokens from
transformers' own `model.generate(do_sample=False)`, log-probabilities from a plain forward
pass and a float64 log-softmax, token ids from the tokenizer itself. The server must give
the same text, the same ids and log-probabilities within 1e-4.
"""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from tests.serving import ServerProcess

QUESTION = "What is the capital of France?"
TOL = 1e-4


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with ServerProcess(["-m", str(tiny_model_dir)]) as running:
        yield running


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def post(server, path: str, body: dict, root: bool = False) -> httpx.Response:
    return httpx.post((server.root if root else server.url) + path, json=body, timeout=120)


def chat_ids(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def greedy(hf, ids: list[int], n: int) -> list[int]:
    model, tokenizer = hf
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, len(ids) :].tolist()
    return new[: new.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in new else new


def logprobs_along(hf, ids: list[int], new: list[int]) -> torch.Tensor:
    """log p(. | ids + new[:i]) for each i: [len(new), vocab], float64."""
    model, _ = hf
    with torch.no_grad():
        logits = model(torch.tensor([ids + new])).logits[0].double()
    return torch.log_softmax(logits, dim=-1)[len(ids) - 1 : len(ids) + len(new) - 1]


def byte_level_bytes(tokenizer, token_id: int) -> bytes:
    """A byte-level BPE token's exact bytes, through GPT-2's byte-to-unicode table."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    decoder = {c: b for b, c in bytes_to_unicode().items()}
    return bytes(decoder[c] for c in tokenizer.convert_ids_to_tokens(token_id))


def text_of(tokenizer, ids: list[int], *, chat: bool) -> str:
    body = [i for i in ids if i != tokenizer.eos_token_id]
    text = tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text.lstrip() if chat else text


def sse_events(response: httpx.Response) -> list:
    """The `data:` payloads of a server-sent event stream, [DONE] included as a string."""
    out = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# ---------------------------------------------------------------- the simple endpoints


def test_health_and_models(server, tiny_model_dir):
    assert httpx.get(server.root + "/health").json() == {"status": "ok"}
    models = httpx.get(server.url + "/models").json()
    assert models["object"] == "list"
    [card] = models["data"]
    assert card["id"] == tiny_model_dir.name and card["object"] == "model" and card["max_model_len"] == 128
    assert httpx.get(server.url + f"/models/{tiny_model_dir.name}").json()["id"] == tiny_model_dir.name


def test_tokenize_and_detokenize_in_vllms_shape(server, hf):
    _, tokenizer = hf
    text = "Hello, world! Café 🍕"
    body = post(server, "/tokenize", {"prompt": text, "return_token_strs": True}, root=True).json()
    expected = tokenizer(text, add_special_tokens=True)["input_ids"]
    assert body["tokens"] == expected and body["count"] == len(expected) and body["max_model_len"] == 128
    assert body["token_strs"] == tokenizer.convert_ids_to_tokens(expected)
    chat = post(server, "/tokenize", {"messages": [{"role": "user", "content": QUESTION}]}, root=True).json()
    assert chat["tokens"] == chat_ids(tokenizer, QUESTION)
    back = post(server, "/detokenize", {"tokens": expected}, root=True).json()
    assert back == {"prompt": text}


# ---------------------------------------------------------------- chat


def test_greedy_chat_equals_transformers_generate(server, hf):
    _, tokenizer = hf
    ids = chat_ids(tokenizer, QUESTION)
    new = greedy(hf, ids, 12)
    body = post(server, "/chat/completions", {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 12, "temperature": 0}).json()
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": text_of(tokenizer, new, chat=True)}
    assert choice["finish_reason"] == ("stop" if tokenizer.eos_token_id in new else "length")
    assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)}
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")


def test_chat_logprobs_are_the_models_own_before_temperature(server, hf):
    """Sampled at T=1.7 with top-k 5: the logprobs still are the raw log-softmax."""
    _, tokenizer = hf
    ids = chat_ids(tokenizer, QUESTION)
    request = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 6, "temperature": 1.7, "top_k": 5, "seed": 3, "logprobs": True, "top_logprobs": 20}
    content = post(server, "/chat/completions", request).json()["choices"][0]["logprobs"]["content"]
    new = [entry["id"] for entry in content]
    expected = logprobs_along(hf, ids, new)
    for entry, row, token_id in zip(content, expected, new):
        assert abs(entry["logprob"] - float(row[token_id])) < TOL
        assert bytes(entry["bytes"]) == byte_level_bytes(tokenizer, token_id)
        values, top_ids = torch.topk(row, 20)
        assert [t["id"] for t in entry["top_logprobs"]] == top_ids.tolist()
        assert max(abs(t["logprob"] - v) for t, v in zip(entry["top_logprobs"], values.tolist())) < TOL
        assert entry["top_logprobs"][0]["token"] == tokenizer.decode([top_ids[0].item()])


def test_streaming_gives_the_same_text_as_not_streaming(server):
    request = {"messages": [{"role": "user", "content": "Tell me a joke."}], "max_tokens": 20, "temperature": 0}
    whole = post(server, "/chat/completions", request).json()["choices"][0]["message"]["content"]
    with httpx.stream("POST", server.url + "/chat/completions", json=request | {"stream": True, "stream_options": {"include_usage": True}}, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == whole
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1


def test_streamed_logprobs_match_the_whole_responses(server):
    request = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 3}
    whole = post(server, "/chat/completions", request).json()["choices"][0]["logprobs"]["content"]
    with httpx.stream("POST", server.url + "/chat/completions", json=request | {"stream": True}, timeout=120) as r:
        events = sse_events(r)[:-1]
    streamed = [e for c in events for e in ((c["choices"][0]["logprobs"] or {}).get("content") or [])]
    assert [e["id"] for e in streamed] == [e["id"] for e in whole]
    assert max(abs(a["logprob"] - b["logprob"]) for a, b in zip(streamed, whole)) < 1e-6


def test_stop_strings_and_seeded_sampling(server):
    messages = [{"role": "user", "content": "Hello"}]
    free = post(server, "/chat/completions", {"messages": messages, "max_tokens": 16, "temperature": 0}).json()["choices"][0]["message"]["content"]
    stop = free[3:5]
    cut = post(server, "/chat/completions", {"messages": messages, "max_tokens": 16, "temperature": 0, "stop": [stop]}).json()["choices"][0]
    assert cut["message"]["content"] == free[: free.index(stop)] and cut["finish_reason"] == "stop"
    sampled = [post(server, "/chat/completions", {"messages": messages, "max_tokens": 10, "temperature": 1.0, "seed": 7}).json()["choices"][0]["message"]["content"] for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_the_openai_sdk_as_a_client(server, hf):
    import openai

    _, tokenizer = hf
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    [card] = client.models.list().data
    reply = client.chat.completions.create(model=card.id, messages=[{"role": "user", "content": QUESTION}], max_tokens=10, temperature=0, logprobs=True, top_logprobs=2)
    ids = chat_ids(tokenizer, QUESTION)
    assert reply.choices[0].message.content == text_of(tokenizer, greedy(hf, ids, 10), chat=True)
    assert len(reply.choices[0].logprobs.content[0].top_logprobs) == 2
    stream = client.chat.completions.create(model=card.id, messages=[{"role": "user", "content": QUESTION}], max_tokens=10, temperature=0, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == reply.choices[0].message.content
    echo = client.completions.create(model=card.id, prompt="The quick brown fox", max_tokens=0, echo=True, logprobs=1)
    assert echo.choices[0].text == "The quick brown fox" and echo.choices[0].logprobs.token_logprobs[0] is None
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])


# ---------------------------------------------------------------- completions


def test_raw_completion_equals_transformers_generate(server, hf):
    _, tokenizer = hf
    prompt = "The quick brown fox"
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    new = greedy(hf, ids, 10)
    body = post(server, "/completions", {"prompt": prompt, "max_tokens": 10, "temperature": 0, "logprobs": 1}).json()
    choice = body["choices"][0]
    assert choice["text"] == text_of(tokenizer, new, chat=False)
    expected = logprobs_along(hf, ids, new)
    assert max(abs(lp - float(row[t])) for lp, row, t in zip(choice["logprobs"]["token_logprobs"], expected, new)) < TOL
    assert body["object"] == "text_completion"
    token_ids = post(server, "/completions", {"prompt": ids, "max_tokens": 10, "temperature": 0}).json()
    assert token_ids["choices"][0]["text"] == choice["text"]


def test_echo_with_zero_tokens_gives_the_prompts_own_logprobs(server, hf):
    model, tokenizer = hf
    prompt = "The capital of France is Paris."
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    body = post(server, "/completions", {"prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 3}).json()
    choice = body["choices"][0]
    block = choice["logprobs"]
    assert choice["text"] == prompt and body["usage"]["completion_tokens"] == 0
    assert "".join(block["tokens"]) == prompt and block["token_logprobs"][0] is None and block["top_logprobs"][0] is None
    for i in range(1, len(ids)):
        assert abs(block["token_logprobs"][i] - float(expected[i - 1, ids[i]])) < TOL
        best = torch.topk(expected[i - 1], 3)
        texts = [tokenizer.decode([j]) for j in best.indices.tolist()]
        for text, value in zip(texts, best.values.tolist()):
            if text in block["top_logprobs"][i] and texts.count(text) == 1:
                assert abs(block["top_logprobs"][i][text] - value) < TOL
    offsets = [len("".join(block["tokens"][:i])) for i in range(len(ids))]
    assert block["text_offset"] == offsets


def test_echo_with_generation_and_streamed_completion(server):
    prompt = "Once upon a time"
    whole = post(server, "/completions", {"prompt": prompt, "max_tokens": 6, "temperature": 0, "echo": True}).json()["choices"][0]["text"]
    assert whole.startswith(prompt) and len(whole) > len(prompt)
    with httpx.stream("POST", server.url + "/completions", json={"prompt": prompt, "max_tokens": 6, "temperature": 0, "stream": True}, timeout=120) as r:
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    assert prompt + "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"]) == whole


# ---------------------------------------------------------------- the log


def test_one_log_line_per_request_with_its_tokens(server, tiny_model_dir):
    body = post(server, "/chat/completions", {"messages": [{"role": "user", "content": "Log me"}], "max_tokens": 5, "temperature": 0}).json()
    usage = body["usage"]
    line = server.wait_for_log(rf"POST /v1/chat/completions 200 {tiny_model_dir.name} {usage['prompt_tokens']} in {usage['completion_tokens']} out")
    assert line.endswith("s") and "stream" not in line
