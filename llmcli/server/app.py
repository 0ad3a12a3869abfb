"""The routes of `llmcli serve`: each one a thin client of `llmcli.api`.

A route reads its request (`schemas`), asks the `Model` (a prompt, a `Response`, a
`PromptLogprobs`, a tokenization), takes its turn on the model (`runner`) and writes the
result in OpenAI's shape (`openai_format`). The model's own log-softmax, before temperature
and the sampler's cuts, is what every `logprobs` field reports (vLLM's default, as llama.cpp
does); `top_logprobs` go up to 20.

Sampling fields left out take the model's recommended values (smollm2: temperature 0.2,
top-p 0.9), else OpenAI's defaults (temperature 1); `max_tokens` left out on chat means up
to the end of the context window, as vLLM does.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time,
# and `Request` is imported inside `create_app`.
import contextlib
import functools
import json
import time
from dataclasses import replace
from typing import Any, AsyncIterator

from llmcli.generation import TokenEvent
from llmcli.prompting import Message, Prompt
from llmcli.sampling import SamplingSettings
from llmcli.server import openai_format as fmt
from llmcli.server.guards import DEFAULT_MAX_BODY, ApiError, Guard, RequestLog, install_handlers
from llmcli.server.runner import ModelRunner
from llmcli.server.schemas import ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest

_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")


class Served:
    """The models being served, by the name clients use."""

    def __init__(self, models: dict[str, Any]):
        self.runners = {name: ModelRunner(name, model) for name, model in models.items()}
        self.created = int(time.time())

    def runner(self, name: str | None) -> ModelRunner:
        if name is None:
            return next(iter(self.runners.values()))
        if name not in self.runners:
            raise ApiError(404, f"the model '{name}' does not exist; this server serves: {', '.join(self.runners)}", code="model_not_found", param="model")
        return self.runners[name]


def create_app(models: dict[str, Any], *, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY, write_log: Any = None, verbose: bool = False) -> Any:
    """The ASGI app: the routes, the error handlers, the key and size guard, the request log."""
    from fastapi import FastAPI, Request
    from sse_starlette import EventSourceResponse

    served = Served(models)
    app = FastAPI(title="llmcli serve", docs_url=None, redoc_url=None, openapi_url=None)
    install_handlers(app)

    def sse(request: Request, stream: Any, *args: Any) -> Any:
        """Server-sent events from `stream(*args, until)`, where `until()` says to stop: the
        client has gone, or the server is shutting down (sse-starlette sets the event, then
        gives the stream a grace period to end with an error event and [DONE])."""
        import anyio

        shutdown = anyio.Event()

        async def until() -> bool:
            return shutdown.is_set() or await request.is_disconnected()

        return EventSourceResponse(stream(*args, until, shutdown), sep="\n", ping=15, shutdown_event=shutdown, shutdown_grace_period=3)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [fmt.model_card(r.name, r.model, served.created) for r in served.runners.values()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict:
        runner = served.runner(name)
        return fmt.model_card(runner.name, runner.model, served.created)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        runner = served.runner(body.model)
        model = runner.model
        prompt = model.chat_prompt([Message(m.llmcli_role, m.content) for m in body.messages])
        _note(request, runner.name, None, tokens_in=len(prompt.ids), stream=body.stream)
        _fits(model, prompt, generating=True)
        top = (body.top_logprobs or 0) if body.logprobs else 0
        response = model.generate(prompt, settings=_settings(model, body, body.max_new_tokens), top_logprobs=top)
        _note(request, runner.name, response, stream=body.stream)
        rid = fmt.request_id("chatcmpl")
        if body.stream:
            return sse(request, _chat_stream, runner, response, body, request, rid)
        async with runner.turn():
            async for _ in runner.events(response, request.is_disconnected):
                pass
        _finished(request, response)
        return fmt.chat_completion(runner.name, rid, response.text, response.events, response.stats, model.tokenizer, body.logprobs)

    async def _chat_stream(runner: ModelRunner, response: Any, body: ChatRequest, request: Request, rid: str, until: Any, shutdown: Any) -> AsyncIterator[dict]:
        tokenizer = runner.model.tokenizer
        try:
            yield _data(fmt.chat_chunk(runner.name, rid, {"role": "assistant", "content": ""}))
            # aclosing: a stream closed at a `yield` (the client left) closes the token loop at once.
            async with runner.turn(), contextlib.aclosing(runner.events(response, until)) as events:
                async for event in events:
                    logprobs = [fmt.chat_logprob(tokenizer, event)] if body.logprobs and not event.end else None
                    if event.text or logprobs:
                        yield _data(fmt.chat_chunk(runner.name, rid, {"content": event.text}, logprobs=logprobs))
            if shutdown.is_set():
                yield from_shutdown()
                yield {"data": "[DONE]"}
                return
            yield _data(fmt.chat_chunk(runner.name, rid, {}, finish=fmt.finish_reason(response.stats)))
            if body.include_usage:
                yield _data(fmt.usage_chunk(runner.name, rid, response.stats))
            yield {"data": "[DONE]"}
        finally:
            _finished(request, response)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        runner = served.runner(body.model)
        model = runner.model
        if isinstance(body.prompt, list):
            _check_ids(runner, body.prompt, "prompt")
        prompt = _raw_prompt(model, body.prompt)
        _note(request, runner.name, None, tokens_in=len(prompt.ids), stream=body.stream)
        rid = fmt.request_id("cmpl")
        scored = body.echo and body.logprobs is not None
        if body.max_tokens == 0:  # echo only: the prompt's own log-probabilities
            _fits(model, prompt, generating=False)
            async with runner.turn():
                prompt_entries = await runner.run(functools.partial(model.prompt_logprobs, prompt, top=body.logprobs or 0)) if scored else None
            logprobs = fmt.legacy_logprobs(prompt_entries.tokens) if prompt_entries else None
            request.state.log.update(tokens_out=0, finish="length")
            return fmt.completion(runner.name, rid, prompt.text, logprobs, "length", fmt.usage(None, len(prompt.ids)))
        _fits(model, prompt, generating=True)
        response = model.generate(prompt, settings=_settings(model, body, body.max_tokens), top_logprobs=body.logprobs or 0)
        _note(request, runner.name, response, stream=body.stream)
        if body.stream:
            return sse(request, _completion_stream, runner, prompt, response, body, request, rid)
        async with runner.turn():
            prompt_entries = await runner.run(functools.partial(model.prompt_logprobs, prompt, top=body.logprobs or 0)) if scored else None
            async for _ in runner.events(response, request.is_disconnected):
                pass
        _finished(request, response)
        echoed = prompt.text if body.echo else ""
        logprobs = None
        if body.logprobs is not None:
            generated = fmt.generated_logprobs(model.tokenizer, response.events)
            logprobs = fmt.legacy_logprobs([*(prompt_entries.tokens if prompt_entries else ()), *generated])
        return fmt.completion(runner.name, rid, echoed + response.text, logprobs, fmt.finish_reason(response.stats), fmt.usage(response.stats, 0), {"timings": fmt.timings(response.stats)})

    async def _completion_stream(runner: ModelRunner, prompt: Prompt, response: Any, body: CompletionRequest, request: Request, rid: str, until: Any, shutdown: Any) -> AsyncIterator[dict]:
        tokenizer = runner.model.tokenizer
        offset = 0
        try:
            async with runner.turn(), contextlib.aclosing(runner.events(response, until)) as events:
                if body.echo:
                    offset = len(prompt.text)
                    yield _data(fmt.completion_chunk(runner.name, rid, prompt.text))
                async for event in events:
                    logprobs = _event_logprobs(tokenizer, event, offset) if body.logprobs is not None and not event.end else None
                    if event.text or logprobs:
                        yield _data(fmt.completion_chunk(runner.name, rid, event.text, logprobs=logprobs))
                    offset += len(event.text)
            if shutdown.is_set():
                yield from_shutdown()
                yield {"data": "[DONE]"}
                return
            yield _data(fmt.completion_chunk(runner.name, rid, "", finish=fmt.finish_reason(response.stats)))
            if body.include_usage:
                yield _data(fmt.usage_chunk(runner.name, rid, response.stats, "text_completion"))
            yield {"data": "[DONE]"}
        finally:
            _finished(request, response)

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request) -> dict:
        runner = served.runner(body.model)
        model = runner.model
        if body.messages is not None:
            ids = model.chat_prompt([Message(m.llmcli_role, m.content) for m in body.messages], add_generation_prompt=body.add_generation_prompt).ids
        else:
            ids = model.tokenize(body.prompt or "", add_special=body.add_special_tokens).ids
        request.state.log.update(model=runner.name, tokens_in=len(ids))
        pieces = [model.view.piece(i) for i in ids] if body.return_token_strs else None
        tokens: list = [fmt.piece(i, model.view.token_bytes(i)) for i in ids] if body.with_pieces else ids
        return {"count": len(ids), "max_model_len": model.context_length, "tokens": tokens, "token_strs": pieces}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest, request: Request) -> dict:
        runner = served.runner(body.model)
        request.state.log.update(model=runner.name, tokens_in=len(body.tokens))
        _check_ids(runner, body.tokens, "tokens")
        return {"prompt": runner.model.detokenize(body.tokens).text}

    app.router.redirect_slashes = False
    guarded = Guard(app, api_key=api_key, max_body=max_body)
    return RequestLog(guarded, write_log or _stderr, verbose=verbose)


# ---------------------------------------------------------------- small pieces


def _data(chunk: dict) -> dict:
    return {"data": json.dumps(chunk, ensure_ascii=False)}


def from_shutdown() -> dict:
    return _data(fmt.error("the server is shutting down: the reply was cut short", "server_error", "server_shutdown"))


def _event_logprobs(tokenizer: Any, event: TokenEvent, offset: int) -> dict:
    return fmt.legacy_logprobs(fmt.generated_logprobs(tokenizer, [event]), offset)


def _settings(model: Any, body: Any, max_new_tokens: int | None) -> SamplingSettings:
    """The request's sampling; fields left out take the model's recommended values, else OpenAI's defaults."""
    values: dict[str, Any] = {"temperature": 1.0} | model.recommended_sampling()
    values |= {name: getattr(body, name) for name in _SAMPLING_FIELDS if getattr(body, name) is not None}
    stop = body.stop if isinstance(body.stop, list) else [body.stop] if body.stop else []
    limit = max_new_tokens or model.context_length or 2048  # up to the end of the window: the engine stops there
    return replace(SamplingSettings(), **values, stop=tuple(stop), max_new_tokens=limit).validate()


def _check_ids(runner: ModelRunner, ids: list[int], param: str) -> None:
    """400 for an id outside the vocabulary, naming the model as served, never its path here."""
    size = runner.model.view.vocab_size
    outside = next((t for t in ids if not 0 <= t < size), None)
    if outside is not None:
        raise ApiError(400, f"token id {outside} is not in {runner.name}'s vocabulary (ids run from 0 to {size - 1})", param=param)


def _raw_prompt(model: Any, prompt: str | list[int]) -> Prompt:
    if isinstance(prompt, str):
        return model.prompt(prompt, mode="raw")
    text = model.detokenize(prompt).text
    return Prompt(text, list(prompt), "raw")


def _fits(model: Any, prompt: Prompt, *, generating: bool) -> None:
    """413 for a prompt over the context window (generating needs one more position)."""
    window = model.context_length
    if not prompt.ids:
        raise ApiError(400, "the prompt is empty (and this model's tokenizer adds no BOS token): there is nothing to predict from", param="prompt")
    if window and (len(prompt.ids) >= window if generating else len(prompt.ids) > window):
        raise ApiError(413, f"the prompt is {len(prompt.ids):,} tokens; the model's context window holds {window:,}", code="context_length_exceeded")


def _note(request: Any, model: str, response: Any, *, stream: bool = False, tokens_in: int | None = None) -> None:
    info = request.state.log
    info.update(model=model, stream=stream)
    if response is not None:
        info.update(tokens_in=len(response.prompt.ids), settings=_describe(response.settings))
    elif tokens_in is not None:
        info["tokens_in"] = tokens_in


def _finished(request: Any, response: Any) -> None:
    try:
        stats = response.stats
    except RuntimeError:  # the client left before its turn came
        request.state.log.update(tokens_out=0, finish="cancelled")
        return
    request.state.log.update(tokens_out=stats.generated_tokens, finish=stats.finish_reason)


def _describe(settings: SamplingSettings) -> str:
    return ",".join(f"{k}={v}" for k, v in settings.to_dict().items() if v not in (None, (), []))


def _stderr(line: str) -> None:
    import sys

    from llmcli.render import escape_controls

    sys.stderr.write(escape_controls(line) + "\n")
    sys.stderr.flush()
