"""The local backend: a transformers model and tokenizer in this process.

The weights come from `llmcli.models.load_model`; the forward pass from `llmcli.forward`
(the keywords the installed transformers takes); generation from llmcli's own decode
loop (`llmcli.generation`), which gives exactly `model.generate()`'s greedy tokens.
"""

from __future__ import annotations

from typing import Any, Sequence

from llmcli import forward, prompting
from llmcli.backends import CAPABILITIES
from llmcli.generation import Generation, generate
from llmcli.models import LoadedModel, recommended_sampling
from llmcli.prompting import Prompt
from llmcli.sampling import SamplingSettings


class LocalBackend(prompting.TokenizerPrompts):
    capabilities = CAPABILITIES
    engine = "transformers"

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.label = loaded.label
        self.context_length = loaded.context_length
        self.load_seconds = loaded.load_seconds

    def generation(self, prompt: Prompt, settings: SamplingSettings, *, top_logprobs: int = 0) -> Generation:
        return generate(
            self.model,
            self.tokenizer,
            prompt.ids,
            settings,
            stop_strings=prompt.stop_strings,
            top_logprobs=top_logprobs,
            context_length=self.context_length,
        )

    def logits(self, ids: Sequence[int], keep: int = 1) -> Any:
        import torch

        keep = max(1, min(keep, len(ids)))
        input_ids = torch.tensor([list(ids)], dtype=torch.long, device=self.model.device)
        with torch.inference_mode():
            logits = forward.call(self.model, input_ids, keep=keep).logits
        return logits[0, -keep:].float().cpu()

    def recommended_sampling(self) -> dict[str, float]:
        return recommended_sampling(self.loaded)

    def info(self) -> Any:
        from llmcli.inspect.architecture import model_info

        return model_info(self.loaded)

    def summary(self) -> Any:
        from llmcli.inspect.architecture import summary

        loaded = self.loaded
        return summary(loaded.model, loaded.ref, loaded.dtype, loaded.device, loaded.quantize, loaded.compiled)
