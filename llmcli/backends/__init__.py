"""The backend seam: everything llmcli asks of a model, in one small protocol.

`llmcli.api.Model` (what the commands, the chat, compare and the server use) holds a
Backend and builds every feature from these few operations. The first implementation is
`backends.local.LocalBackend`, a transformers model in this process; a faster engine of
llmcli's own and a remote OpenAI-compatible server plug in here without the layers above
changing.

What a backend cannot do it says through `capabilities` (a remote server may have no
tokenizer endpoint, or return only the top 20 log-probabilities); the API turns a
missing capability into one clear error.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from llmcli.generation import Generation
from llmcli.prompting import Message, Prompt
from llmcli.sampling import SamplingSettings

# What a backend may offer. Local models offer all of them.
CAPABILITIES = frozenset({"logits", "tokenizer", "hidden_states", "attentions", "embeddings"})


class Backend(Protocol):
    label: str  # how commands name the model
    context_length: int | None  # tokens the model's window holds (None: unknown)
    load_seconds: float
    capabilities: frozenset[str]
    tokenizer: Any  # a transformers-compatible tokenizer (encode, decode, convert_ids_to_tokens)

    def has_chat_template(self) -> bool: ...

    def raw_prompt(self, text: str) -> Prompt: ...

    def chat_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> Prompt: ...

    def generation(
        self, prompt: Prompt, settings: SamplingSettings, *, top_logprobs: int = 0
    ) -> Generation: ...

    def logits(self, ids: Sequence[int], keep: int = 1) -> Any:
        """float32 logits of the last `keep` positions after `ids`, [keep, vocab], on the CPU."""
        ...

    def recommended_sampling(self) -> dict[str, float]: ...

    def info(self) -> Any: ...

    def summary(self) -> Any:
        """`inspect.architecture.ModelSummary` (a remote model: its `info()`), without loading anything more."""
        ...
