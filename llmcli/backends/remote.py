"""The remote backend: a model on an OpenAI-compatible server (vLLM, llama.cpp's server,
Ollama, LM Studio, `transformers serve`, llmcli serve, OpenAI itself).

    llmcli.load("openai:smollm2", base_url="http://127.0.0.1:8000/v1")
    llmcli.load("openai:smollm2@http://127.0.0.1:8000/v1")      # the URL in the name

Chat and completions go through the `openai` SDK (its timeouts, and its retries with
backoff on 429, 5xx and dropped connections); the endpoints OpenAI does not have
(/tokenize, /detokenize) through `httpx`. Nothing here imports torch or transformers: a
remote `probs` is a fraction of a second's work in the client.

Decisions:
- The server's URL: the one in the name, else `base_url` (--base-url), else
  $LLMCLI_BASE_URL, else $OPENAI_BASE_URL. The key: the variable `api_key_env` names
  (--api-key-env), else $LLMCLI_API_KEY (what `llmcli serve` reads), else none. A key
  another service issued ($OPENAI_API_KEY) is sent only when asked for by name. A key is
  never printed, logged or written anywhere (a saved chat records only the model's name).
- Capabilities are detected, never assumed from a server's name: a server that answers
  /tokenize has a tokenizer endpoint, one that returns `logprobs` when asked has them. What
  a server lacks becomes one `LlmcliError` saying so (`errors.py`'s mapping for the rest:
  refused, timed out, 401, 404 model).
- $LLMCLI_TIMEOUT (seconds, default 600) is how long to wait for a server's next bytes.
- There are no logits: `probs` reads the server's top 20 (`llmcli.api.probs`), `score`
  its echoed prompt log-probabilities (`prompt_logprobs`). Asking for more than 20
  alternatives gets 20, OpenAI's limit.
- A reply's `token_ids` and logprobs leave out the end-of-turn token the server stopped
  at (servers report no entry for it, as OpenAI's API does); `usage` counts it.
- A prompt is sent as messages (chat) or text (raw); its `ids` come from the server's
  /tokenize when it has one (empty otherwise, and the server's usage counts the tokens).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from llmcli.api.logprobs import PromptLogprobs
from llmcli.backends import openai_shapes as shapes
from llmcli.backends.remote_errors import Errors
from llmcli.backends.remote_tokens import RemoteVocabulary
from llmcli.errors import BadInput, LlmcliError
from llmcli.generation import GenerationStats, TokenEvent
from llmcli.prompting import Message, Prompt
from llmcli.sampling import SamplingSettings

PREFIX = "openai:"
MAX_TOP_LOGPROBS = 20
UNKNOWN_ID = -(1 << 31)  # a chunk of text the server sent without saying which tokens it is
_NAME_WITH_URL = re.compile(r"^openai:(?P<model>[^@]+)@(?P<url>https?://\S+)$")
CAPABILITIES = frozenset({"remote"})  # no logits, no tokenizer here: see the module docstring


def is_remote(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIX)


@dataclass(frozen=True)
class RemotePrompt(Prompt):
    """A prompt for a server: the messages it renders with its own chat template (chat
    mode), or the text (raw). `text` and `ids` are what the server's tokenizer said, if it has one."""

    messages: tuple[Message, ...] = ()


@dataclass(frozen=True)
class RemoteInfo:
    name: str
    model: str
    base_url: str
    context_length: int | None
    remote: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def server_url(name: str, base_url: str | None = None, environ: Any = os.environ) -> tuple[str, str]:
    """(model, base URL) for `openai:MODEL[@URL]`."""
    if match := _NAME_WITH_URL.match(name):
        return match.group("model"), match.group("url").rstrip("/")
    model = name[len(PREFIX) :]
    if not model or "@" in model:
        raise BadInput(f"'{name}' is not a remote model name", "write openai:MODEL (with --base-url URL) or openai:MODEL@http://host:port/v1")
    url = base_url or environ.get("LLMCLI_BASE_URL") or environ.get("OPENAI_BASE_URL")
    if not url:
        raise BadInput(f"no server URL for {name}", "give --base-url URL, set $LLMCLI_BASE_URL, or write openai:MODEL@http://127.0.0.1:8000/v1")
    if not re.match(r"^https?://", url):
        raise BadInput(f"the server URL must start with http:// or https:// (got {url!r})", "e.g. --base-url http://127.0.0.1:8000/v1")
    return model, url.rstrip("/")


def api_key(api_key_env: str | None, environ: Any = os.environ) -> str | None:
    if api_key_env:
        value = environ.get(api_key_env)
        if not value:
            raise BadInput(f"--api-key-env {api_key_env}: that environment variable is not set", f"export {api_key_env}=... first")
        return value
    return environ.get("LLMCLI_API_KEY") or None


class RemoteBackend:
    capabilities = CAPABILITIES
    load_seconds = 0.0

    def __init__(self, name: str, *, base_url: str | None = None, api_key_env: str | None = None, timeout: float | None = None, max_retries: int = 2):
        self.model, self.base_url = server_url(name, base_url)
        # Seconds to wait for a server's next bytes (a CPU server can be slow over a long prompt).
        timeout = timeout or float(os.environ.get("LLMCLI_TIMEOUT") or 600)
        # How commands name it: openai:MODEL, and the server's host:port when the name carries it
        # (so two servers' models side by side in compare are told apart).
        self.label = f"{PREFIX}{self.model}" + (f"@{urlsplit(self.base_url).netloc}" if _NAME_WITH_URL.match(name) else "")
        self.root = self.base_url.removesuffix("/v1")
        self._key = api_key(api_key_env)
        self._timeout, self._max_retries = timeout, max_retries
        self.errors = Errors(self.model, self.base_url, self._models)
        self.tokenizer = RemoteVocabulary(self._encode, self._decode)
        self._client: Any = None
        self._http: Any = None
        self._card: dict | None = None  # the /v1/models entry, asked for once when needed
        self._tokenize_missing: str | None = None  # why /tokenize failed, once it has

    # ---------------------------------------------------------------- clients

    @property
    def client(self) -> Any:
        if self._client is None:
            import httpx
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._key or "none", timeout=httpx.Timeout(self._timeout, connect=5.0), max_retries=self._max_retries)
        return self._client

    @property
    def http(self) -> Any:
        if self._http is None:
            import httpx

            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(self._timeout, connect=5.0))
        return self._http

    def _post(self, path: str, body: dict) -> dict:
        with self.errors.http(path):
            response = self.http.post(self.root + path, json=body)
            response.raise_for_status()
            return response.json()

    def _models(self) -> list[dict]:
        with self.errors.http("/v1/models"):
            response = self.http.get(self.base_url + "/models")
            response.raise_for_status()
            return list(response.json().get("data") or [])

    # ---------------------------------------------------------------- what it is

    @property
    def card(self) -> dict:
        """The server's /v1/models entry for this model ({} when it has none or cannot say)."""
        if self._card is None:
            try:
                self._card = next((m for m in self._models() if m.get("id") == self.model), {})
            except LlmcliError:
                self._card = {}
        return self._card

    @property
    def context_length(self) -> int | None:
        return shapes.context_length(self.card)

    def has_chat_template(self) -> bool:
        return True  # the server applies its own template on the chat endpoint

    def recommended_sampling(self) -> dict[str, float]:
        """What the server samples with when a field is left out, when it says (llmcli serve does)."""
        return shapes.sampling_defaults(self.card)

    def info(self) -> RemoteInfo:
        return RemoteInfo(self.label, self.model, self.base_url, self.context_length)

    def summary(self) -> RemoteInfo:
        return self.info()

    def logits(self, ids: Sequence[int], keep: int = 1) -> Any:
        raise LlmcliError(f"{self.label} is on a server, which gives no logits", "this needs a local model; probs on a remote model reads the server's top 20")

    # ---------------------------------------------------------------- prompts and tokens

    def raw_prompt(self, text: str) -> RemotePrompt:
        return RemotePrompt(text, self._ids_if_known({"prompt": text, "content": text, "add_special_tokens": True, "add_special": True}), "raw")

    def chat_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> RemotePrompt:
        cleaned = tuple(Message(m.role, m.content.strip()) for m in messages)
        ids = self._ids_if_known({"messages": [{"role": m.role, "content": m.content} for m in cleaned], "add_generation_prompt": add_generation_prompt})
        text = self.tokenizer.decode(ids) if ids else ""
        return RemotePrompt(text, ids, "chat", messages=cleaned)

    def _ids_if_known(self, body: dict) -> list[int]:
        if self._tokenize_missing:
            return []
        try:
            return self._tokenize(body)
        except LlmcliError:
            return []

    def _tokenize(self, body: dict) -> list[int]:
        if self._tokenize_missing:
            raise LlmcliError(self._tokenize_missing, "vLLM, llama.cpp's server and llmcli serve have one; Ollama and OpenAI do not")
        try:
            answer = self._post("/tokenize", {"model": self.model, "with_pieces": True, "return_token_strs": True, **body})
        except LlmcliError as e:
            if getattr(e, "status", None) in (404, 405, 501):
                self._tokenize_missing = f"the server at {self.root} has no /tokenize endpoint ({e.status})"
                raise LlmcliError(self._tokenize_missing, "vLLM, llama.cpp's server and llmcli serve have one; Ollama and OpenAI do not") from None
            raise
        ids, pieces, strings = shapes.tokens(answer)
        self.tokenizer.learn_pieces(ids, pieces, strings)
        return ids

    def _encode(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return self._tokenize({"prompt": text, "content": text, "add_special_tokens": add_special, "add_special": add_special, "parse_special": parse_special})

    def _decode(self, ids: list[int]) -> str:
        if self._tokenize_missing:
            raise LlmcliError(f"the server at {self.root} cannot decode tokens (no /tokenize or /detokenize endpoint)")
        return shapes.detokenized(self._post("/detokenize", {"model": self.model, "tokens": list(ids)}))

    # ---------------------------------------------------------------- generating

    def generation(self, prompt: Prompt, settings: SamplingSettings, *, top_logprobs: int = 0) -> RemoteGeneration:
        settings.validate()
        if prompt.mode == "raw" and not prompt.text:
            raise BadInput("the prompt is empty", "give some text to continue")
        return RemoteGeneration(self, prompt, settings, min(top_logprobs, MAX_TOP_LOGPROBS))

    def request(self, prompt: Prompt, settings: SamplingSettings, *, stream: bool, top: int, echo: bool = False) -> Any:
        """One chat or completions request for the prompt (raw prompts use completions)."""
        stop = list(dict.fromkeys((*settings.stop, *prompt.stop_strings)))[:4]
        kwargs: dict[str, Any] = {"model": self.model, "temperature": settings.temperature, "max_tokens": settings.max_new_tokens}
        kwargs |= {k: v for k, v in (("top_p", settings.top_p), ("seed", settings.seed), ("stop", stop or None)) if v is not None}
        extra = {k: v for k, v in (("top_k", settings.top_k), ("min_p", settings.min_p)) if v}
        if settings.repetition_penalty != 1.0:
            extra["repetition_penalty"] = settings.repetition_penalty
        if extra:
            kwargs["extra_body"] = extra
        if stream:
            kwargs |= {"stream": True, "stream_options": {"include_usage": True}}
        with self.errors.openai("chat" if isinstance(prompt, RemotePrompt) and prompt.messages else "completion", logprobs=bool(top) or echo):
            if isinstance(prompt, RemotePrompt) and prompt.messages:
                if top:
                    kwargs |= {"logprobs": True, "top_logprobs": top}
                return self.client.chat.completions.create(messages=[{"role": m.role, "content": m.content} for m in prompt.messages], **kwargs)
            if top or echo:
                kwargs["logprobs"] = top
            if echo:
                kwargs["echo"] = True
            return self.client.completions.create(prompt=prompt.text, **kwargs)

    def top_logprobs(self, prompt: Prompt) -> list[Any]:
        """The server's 20 most likely next tokens after the prompt (TokenLogprobs, best first)."""
        answer = self.request(prompt, SamplingSettings(temperature=0.0, max_new_tokens=1), stream=False, top=MAX_TOP_LOGPROBS).model_dump()
        choice = (answer.get("choices") or [{}])[0]
        entries = shapes.chat_logprobs(choice.get("logprobs")) if "message" in choice else shapes.completion_logprobs(choice.get("logprobs"))
        if not entries or not entries[0].top:
            raise self.errors.no_logprobs()
        return list(entries[0].top)

    def prompt_logprobs(self, prompt: Prompt, top: int = 0) -> PromptLogprobs:
        """Each prompt token's log-probability, through echo + logprobs (vLLM's `prompt_logprobs` too)."""
        if not prompt.text:
            raise BadInput("the prompt is empty", "give some text to score")
        raw = prompt if prompt.mode == "raw" else RemotePrompt(prompt.text, list(prompt.ids), "raw")
        answer = self.request(raw, SamplingSettings(temperature=0.0, max_new_tokens=1), stream=False, top=min(top, MAX_TOP_LOGPROBS), echo=True).model_dump()
        choice = (answer.get("choices") or [{}])[0]
        if choice.get("prompt_logprobs") and choice.get("prompt_token_ids"):
            entries = shapes.vllm_prompt_logprobs(choice["prompt_logprobs"], choice["prompt_token_ids"])
        else:
            entries = shapes.completion_logprobs(choice.get("logprobs"))
            entries = entries[: _prompt_length(entries, prompt.text)]
        if not entries or entries[0].logprob is not None:
            raise self.errors.no_logprobs("a prompt's own log-probabilities (echo with logprobs)")
        for entry in entries:
            self.tokenizer.learn(entry.id, entry.bytes, entry.text)
        return PromptLogprobs(self.label, prompt.text, tuple(entries))


def _prompt_length(entries: list, text: str) -> int:
    """How many echoed entries spell the prompt (the rest were generated)."""
    spelled = ""
    for n, entry in enumerate(entries, start=1):
        spelled += entry.text
        if len(spelled) >= len(text):
            return n
    return len(entries)


class RemoteGeneration:
    """A streamed remote reply as TokenEvents (one per token when logprobs were asked for,
    else one per chunk of text), then `.text`, `.token_ids`, `.stats` from the server's usage."""

    def __init__(self, backend: RemoteBackend, prompt: Prompt, settings: SamplingSettings, top: int):
        self.backend, self.prompt, self.settings, self.top = backend, prompt, settings, top
        self.text = ""
        self.token_ids: list[int] = []
        self.chunks = 0  # pieces of text that came without logprobs (about one token each)
        self._stats: GenerationStats | None = None
        self._events = self._run()

    def __iter__(self) -> Iterator[TokenEvent]:
        return self._events

    @property
    def stats(self) -> GenerationStats:
        if self._stats is None:
            self._events.close()
        if self._stats is None:
            raise RuntimeError("the generation has not started: iterate over it first")
        return self._stats

    def _run(self) -> Iterator[TokenEvent]:
        self.backend.client  # noqa: B018 - import the SDK before the clock starts: timings are the server's and the network's
        start = time.perf_counter()
        first = None
        finish, usage, speeds = None, {}, None
        stream = None
        try:
            stream = self.backend.request(self.prompt, self.settings, stream=True, top=self.top)
            with self.backend.errors.openai("stream", logprobs=bool(self.top)):
                for chunk in stream:
                    data = chunk.model_dump()
                    usage = data.get("usage") or usage
                    speeds = shapes.server_timings(data) or speeds
                    for choice in data.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        for event in self._events_of(choice):
                            first = first or time.perf_counter()
                            self.text += event.text
                            yield event
            if self.top and not self.token_ids and self.text:
                raise self.backend.errors.no_logprobs()
        except KeyboardInterrupt:
            finish = "interrupted"
        finally:
            if stream is not None:
                stream.close()  # hanging up stops the server's generation (llmcli serve: at the next token)
            self._finish(finish or "interrupted", usage, speeds, start, first)

    def _events_of(self, choice: dict) -> Iterator[TokenEvent]:
        text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
        text = text or ""
        block = choice.get("logprobs")
        entries = shapes.chat_logprobs(block) if "delta" in choice else shapes.completion_logprobs(block)
        if not entries:
            if text:
                self.chunks += 1
                yield TokenEvent(UNKNOWN_ID, text, float("nan"))
            return
        learn = self.backend.tokenizer.learn
        for i, entry in enumerate(entries):
            token_id = learn(entry.id, entry.bytes, entry.text)
            top = tuple((learn(t.id, t.bytes, t.text), t.text, t.logprob) for t in entry.top)
            self.token_ids.append(token_id)
            yield TokenEvent(token_id, text if i == len(entries) - 1 else "", entry.logprob if entry.logprob is not None else float("nan"), top)

    def _finish(self, reason: str, usage: dict, speeds: tuple | None, start: float, first: float | None) -> None:
        now = time.perf_counter()
        prompt_tokens = usage.get("prompt_tokens") or len(self.prompt.ids)
        generated = usage.get("completion_tokens") or len(self.token_ids) or self.chunks  # usage is missing when interrupted
        ttft = (first - start) if first else 0.0
        prefill, decode = speeds or (prompt_tokens / ttft if ttft else 0.0, (generated - 1) / (now - first) if first and generated > 1 and now > first else 0.0)
        reason = {"stop": "stop", "length": "length", "interrupted": "interrupted"}.get(reason, "stop")
        self._stats = GenerationStats(prompt_tokens, generated, ttft, prefill, decode, now - start, 0, reason)
