"""The request bodies `llmcli serve` accepts, as pydantic models: OpenAI's fields, vLLM's
tokenize shape, and llmcli's sampling extras (`top_k`, `min_p`, `repetition_penalty`, as
vLLM and llama.cpp accept them).

A value out of range is a 400 (the validation error handler words it); fields llmcli does not
know are ignored, as vLLM ignores them, except the ones that would silently change the
answer (`n` > 1, tools, a response format, penalties llmcli has no sampler for), which are
refused by name. Sampling ranges are the engine's own (`SamplingSettings.validate`), checked
when the settings are built.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_TOP_LOGPROBS = 20  # OpenAI's limit, and vLLM's default --max-logprobs


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None  # None: the first model served
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    temperature: Optional[float] = Field(None, ge=0)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=0)
    min_p: Optional[float] = Field(None, ge=0, le=1)
    repetition_penalty: Optional[float] = Field(None, gt=0)
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = Field(None, ge=0, le=2**64 - 1)
    n: int = 1
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None

    @model_validator(mode="after")
    def _refuse_what_would_change_the_answer(self) -> _Request:
        if self.n != 1:
            raise ValueError("n must be 1: llmcli serve generates one choice per request")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                raise ValueError(f"{name} is not supported; use repetition_penalty (1 = off)")
        for name in ("tools", "functions", "logit_bias"):
            if (self.model_extra or {}).get(name):
                raise ValueError(f"{name} is not supported by llmcli serve")
        response_format = (self.model_extra or {}).get("response_format")
        if response_format and response_format.get("type", "text") != "text":
            raise ValueError("response_format is not supported by llmcli serve (only plain text)")
        if isinstance(self.stop, list) and (len(self.stop) > 4 or not all(self.stop)):
            raise ValueError("stop takes up to 4 non-empty strings")
        return self

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[dict[str, Any]], None] = ""

    @field_validator("content")
    @classmethod
    def _text_only(cls, content: Any) -> str:
        """A list of content parts is allowed when every part is text (what SDKs send)."""
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise ValueError("only text content parts are supported")
        return "".join(p["text"] for p in content)

    @property
    def llmcli_role(self) -> str:
        return "system" if self.role == "developer" else self.role


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Request):
    prompt: Union[str, list[str], list[int]]
    max_tokens: int = Field(16, ge=0)  # OpenAI's legacy default
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ValueError("one prompt per request (got a list of several)")
            return prompt[0]
        return prompt

    @model_validator(mode="after")
    def _zero_tokens_only_to_echo(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens 0 only makes sense with echo: true (the prompt's own log-probabilities)")
        if self.max_tokens == 0 and self.stream:
            raise ValueError("echo with max_tokens 0 generates nothing to stream; send it with stream: false")
        return self


class TokenizeRequest(BaseModel):
    """vLLM's /tokenize: a `prompt`, or `messages` through the chat template (and
    llama.cpp's `content` and `with_pieces`)."""

    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    prompt: Optional[str] = None
    content: Optional[str] = None  # llama.cpp's name for the prompt
    messages: Optional[list[ChatMessage]] = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True
    return_token_strs: bool = False
    with_pieces: bool = False  # llama.cpp's: each token as {"id", "piece"}, the piece's bytes when not UTF-8

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if self.messages is not None:
            self.prompt = None
        elif self.prompt is None:
            self.prompt = self.content
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        return self


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    tokens: list[int]
