"""`llmcli.load(name)` -> `Model`: a model to generate with, chat with and look inside.

    import llmcli

    model = llmcli.load("smollm2")
    reply = model.generate("What is the capital of France?", temperature=0)
    print(reply.text, reply.stats.decode_tokens_per_second)
    table = model.next_token("The capital of France is").table   # the next-token distribution
    model.score("The capital of France is Paris.").scores.totals.perplexity

Every command, chat slash command, compare side and server route is a thin client of this
class; it holds a backend (`llmcli.backends`) and builds each feature from the backend's
few operations, so a faster engine or a remote server changes nothing here.

How a prompt is built (`prompt`, mode):
- "auto": an instruct model (one with a chat template) gets the text as a user message
  through its template; a base model gets the raw text. A system prompt means chat.
- "chat": the chat template; a base model chats through prompts/base-chat.txt.
- "raw": the text byte for byte.
Sampling values left out take the defaults of `SamplingSettings`; `recommended_sampling()`
gives the model makers' values, which the CLI uses for the flags a user leaves out.
"""

from __future__ import annotations

from typing import Any, Sequence

from llmcli.api import probs
from llmcli.api.inspection import Inspecting
from llmcli.api.response import Response
from llmcli.api.tokenizer import Tokenizer, Tokenizing
from llmcli.errors import BadInput
from llmcli.prompting import Message, Prompt, trim_to_context
from llmcli.sampling import SamplingSettings
from llmcli.tokens import view

MODES = ("auto", "chat", "raw")


class Model(Tokenizing, Inspecting):
    def __init__(self, backend: Any):
        self.backend = backend

    # ---------------------------------------------------------------- what it is

    @property
    def label(self) -> str:
        return self.backend.label

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    @property
    def view(self):
        return view(self.backend.tokenizer)

    @property
    def context_length(self) -> int | None:
        return self.backend.context_length

    @property
    def load_seconds(self) -> float:
        return self.backend.load_seconds

    @property
    def has_chat_template(self) -> bool:
        return self.backend.has_chat_template()

    @property
    def default_system(self) -> str | None:
        """The system prompt the chat template writes when there is none (or None)."""
        from llmcli.prompting import template_default_system

        return template_default_system(self.tokenizer)

    def info(self) -> Any:
        """Architecture, parameters by part, memory per dtype, special tokens (`ModelInfo`)."""
        return self.backend.info()

    def summary(self) -> Any:
        """Parameters, dtype, device, quantization, where it came from (`ModelSummary`; a remote
        model: its `RemoteInfo`): what a chat's first lines show, cheap to ask."""
        return self.backend.summary()

    def recommended_sampling(self) -> dict[str, float]:
        return self.backend.recommended_sampling()

    # ---------------------------------------------------------------- prompts

    def prompt(self, text: str, *, system: str | None = None, mode: str = "auto") -> Prompt:
        if mode not in MODES:
            raise BadInput(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if mode == "raw" and system is not None:
            raise BadInput("a system prompt needs chat mode, and raw mode sends the text as is", "drop one of them")
        if mode == "raw" or (mode == "auto" and system is None and not self.has_chat_template):
            return self.backend.raw_prompt(text)
        messages = [Message("system", system)] if system is not None else []
        return self.chat_prompt([*messages, Message("user", text)])

    def chat_prompt(self, messages: Sequence[Message | dict], *, add_generation_prompt: bool = True) -> Prompt:
        return self.backend.chat_prompt(_messages(messages), add_generation_prompt=add_generation_prompt)

    def fit(self, messages: Sequence[Message | dict], reserve: int) -> tuple[list[Message], int]:
        """The conversation trimmed to the context window with `reserve` tokens left for the
        reply: the oldest turns go, system messages stay. Returns (kept, dropped)."""
        messages = _messages(messages)
        if "tokenizer" not in self.backend.capabilities or not self.context_length:
            return messages, 0  # a remote model: its server says when a conversation is too long
        return trim_to_context(self.tokenizer, messages, self.context_length, reserve)

    # ---------------------------------------------------------------- generating

    def generate(
        self,
        prompt: str | Prompt,
        *,
        system: str | None = None,
        mode: str = "auto",
        settings: SamplingSettings | None = None,
        top_logprobs: int = 0,
        **sampling: Any,
    ) -> Response:
        """Start a generation (it runs as the Response is iterated or read).
        `sampling` are SamplingSettings fields: temperature=0, max_new_tokens=64, seed=1..."""
        built = prompt if isinstance(prompt, Prompt) else self.prompt(prompt, system=system, mode=mode)
        settings = _settings(settings, sampling)
        generation = self.backend.generation(built, settings, top_logprobs=top_logprobs)
        return Response(generation, built, settings, self.label, self.load_seconds)

    def chat(self, messages: Sequence[Message | dict], *, settings: SamplingSettings | None = None, **sampling: Any) -> Response:
        """The assistant's next reply to a conversation."""
        return self.generate(self.chat_prompt(messages), settings=settings, **sampling)

    # ---------------------------------------------------------------- looking inside

    def next_token(
        self,
        prompt: str | Prompt,
        *,
        system: str | None = None,
        mode: str = "raw",
        num: int = 10,
        temperatures: Sequence[float] = (1.0,),
        position: int = -1,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        targets: Sequence[str] = (),
        ids: Sequence[int] | None = None,
        next_is: str = "prompt",
    ):
        """The next-token distribution after the prompt (raw text unless `mode`), as a
        `ProbsReport`: the top `num` rows with a probability column per temperature, the
        sampler's cuts replayed when top_k/top_p/min_p are set, each target's rank."""
        built = prompt if isinstance(prompt, Prompt) else self.prompt(prompt, system=system, mode=mode)
        return probs.report(
            self.backend,
            built,
            ids=ids,
            num=num,
            temperatures=tuple(temperatures),
            position=position,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            targets=targets,
            next_is=next_is,
        )

    def unroll(self, prompt: str | Prompt, *, mode: str = "raw", settings: SamplingSettings | None = None, candidates: int = 5, **sampling: Any) -> probs.Unrolling:
        """Generation unrolled: iterate for each step's candidates and pick, as they come."""
        built = prompt if isinstance(prompt, Prompt) else self.prompt(prompt, mode=mode)
        return probs.Unrolling(self.backend, built, _settings(settings, sampling), candidates)

    def prompt_logprobs(self, prompt: str | Prompt, *, top: int = 0):
        """Each token of a text with its log-probability given the ones before it, and the
        `top` most likely tokens at its position (`llmcli.api.logprobs.PromptLogprobs`); the
        raw text unless a built Prompt is given. What `score` and the server's echo read."""
        from llmcli.api.logprobs import prompt_logprobs

        built = prompt if isinstance(prompt, Prompt) else self.prompt(prompt, mode="raw")
        return prompt_logprobs(self.backend, built, top)

    def logits(self, ids: Sequence[int], keep: int = 1):
        """The raw float32 logits of the last `keep` positions after `ids`."""
        return self.backend.logits(ids, keep)


def _settings(settings: SamplingSettings | None, changes: dict[str, Any]) -> SamplingSettings:
    from dataclasses import replace

    if "stop" in changes and isinstance(changes["stop"], (list, str)):
        changes["stop"] = (changes["stop"],) if isinstance(changes["stop"], str) else tuple(changes["stop"])
    return replace(settings or SamplingSettings(), **changes).validate()


def _messages(messages: Sequence[Message | dict]) -> list[Message]:
    return [m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in messages]


def load(
    name: str | None = None,
    *,
    dtype: str = "auto",
    device: str = "auto",
    quantize: str = "none",
    compile: bool = False,
    trust_remote_code: bool = False,
    engine: str = "auto",
    max_memory: str | None = None,
    progress: Any = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
) -> Model:
    """Load a model by name: a built-in alias (smollm2, gemma3-270m), a .gguf file, a Hugging
    Face directory or hub id. `progress(stage, done, total)` hears about a first-use
    conversion (see llmcli.models.cache).

    `max_memory` ("2GiB"): keep at most that much of the weights in memory and offload the
    rest to disk (accelerate; transformers runs it).

    `engine`: "auto" runs llmcli's own forward pass (`llmcli.engine`) where it runs the model
    exactly (Llama, Gemma 3, Qwen2/3, Mistral, on the CPU), else
    transformers; "llmcli" insists on the engine; "transformers" on transformers.

    `openai:MODEL` (or `openai:MODEL@URL`) is a model on an OpenAI-compatible server, at
    `base_url` (else $LLMCLI_BASE_URL, then $OPENAI_BASE_URL), with the API key in the
    environment variable `api_key_env` (else $LLMCLI_API_KEY): see llmcli.backends.remote.
    The loading options do not apply to it, and `base_url` does not apply to local models."""
    from llmcli.backends.remote import RemoteBackend, is_remote

    if is_remote(name):
        return Model(RemoteBackend(name, base_url=base_url, api_key_env=api_key_env))
    from llmcli.backends.local import LocalBackend
    from llmcli.errors import LlmcliError
    from llmcli.models import LoadOptions, load_model
    from llmcli.models.cache import no_progress

    options = LoadOptions(
        dtype=dtype, device=device, trust_remote_code=trust_remote_code, quantize=quantize, compile=compile, engine=engine, max_memory=max_memory
    )
    progress = progress or no_progress
    if engine == "llmcli" and max_memory is not None:
        raise LlmcliError("--max-memory runs on transformers (accelerate offloads its layers)", "use --engine auto or transformers")
    if engine == "llmcli" or (engine == "auto" and max_memory is None and device in ("auto", "cpu") and not _gpu()):
        from llmcli.backends.engine import EngineBackend
        from llmcli.engine import UnsupportedModel

        try:
            return Model(EngineBackend.load(name, options, progress))
        except UnsupportedModel as e:
            if engine == "llmcli":
                raise LlmcliError(f"llmcli's engine does not run this model: {e}", "use --engine transformers (or auto)") from e
    return Model(LocalBackend(load_model(name, options, progress)))


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def load_tokenizer(name: str | None = None, *, base_url: str | None = None, api_key_env: str | None = None) -> Tokenizing:
    """A model's tokenizer; for a remote model (openai:…), the model itself, whose tokens
    come from its server's /tokenize and /detokenize."""
    if name and name.startswith("openai:"):
        return load(name, base_url=base_url, api_key_env=api_key_env)
    return Tokenizer(name)
