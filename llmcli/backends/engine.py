"""The engine backend: llmcli's own forward pass (`llmcli.engine`), no transformers at all.

For the families the engine implements exactly (Llama/SmolLM2, Gemma 3 text, Qwen2/3,
Mistral) it reads the converted safetensors directly and the tokenizer through
`tokenizers`, so neither transformers' model code nor AutoTokenizer is imported: a
command is ready in a fraction of the time, and each decode step issues a few hundred
tensor ops instead of about 1,700. Its logits equal transformers' (tests compare them).

The views that call a transformers model's own modules (score, lens, attention,
neighbors, info's parameter count) get one: `hf_model()` loads it on first use, once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from llmcli import prompting
from llmcli.backends import CAPABILITIES
from llmcli.generation import Generation, generate
from llmcli.models import LoadedModel, LoadOptions, ModelRef
from llmcli.prompting import Prompt
from llmcli.sampling import SamplingSettings


class EngineBackend(prompting.TokenizerPrompts):
    capabilities = CAPABILITIES
    engine = "llmcli"

    def __init__(self, model: Any, tokenizer: Any, ref: ModelRef, path: Path, options: LoadOptions, load_seconds: float, converted: bool):
        self.engine_model, self.tokenizer, self.ref, self.path = model, tokenizer, ref, path
        self.options, self.load_seconds, self.converted = options, load_seconds, converted
        self.label = ref.label
        self.context_length = model.config.max_position_embeddings
        self._hf: LoadedModel | None = None

    @classmethod
    def load(cls, name: str | None, options: LoadOptions, progress: Any) -> EngineBackend:
        """Raises `engine.UnsupportedModel` for a model the engine does not run exactly, or cannot read."""
        import torch

        from llmcli import engine
        from llmcli.models.resolve import model_dir, resolve

        start = time.perf_counter()
        ref = resolve(name)
        path, converted = model_dir(ref, progress)
        dtype = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[options.dtype]
        from safetensors import SafetensorError

        try:
            tokenizer = engine.load_tokenizer(path)  # first: it refuses fast, before the weights are read
            dtype_name = str(dtype).removeprefix("torch.")  # "auto" is float32: one file for both
            prepared = prepared_path(path, dtype_name)
            if options.quantize == "none":
                model = engine.load(path, dtype=dtype, prepared=prepared)
            else:
                from llmcli.engine.quantized import load_quantized

                variant = f"{dtype_name}-{options.quantize}-torch{torch.__version__}-{torch.backends.cpu.get_cpu_capability()}"
                model = load_quantized(path, options.quantize, dtype, prepared=prepared, path=prepared_path(path, variant))
        except (ValueError, OSError, SafetensorError) as error:
            # A damaged config or checkpoint: transformers' loader names the fault and the fix.
            raise engine.UnsupportedModel(f"cannot read the model: {error}") from error
        if options.compile:
            from llmcli.models.load import compiling

            compiling(model.compile_decode, progress)
        return cls(model, tokenizer, ref, path, options, time.perf_counter() - start, converted)

    # ---------------------------------------------------------------- the backend protocol

    def generation(self, prompt: Prompt, settings: SamplingSettings, *, top_logprobs: int = 0) -> Generation:
        room = min(len(prompt.ids) + settings.max_new_tokens, self.context_length)
        return generate(
            self.engine_model,
            self.tokenizer,
            prompt.ids,
            settings,
            stop_strings=prompt.stop_strings,
            top_logprobs=top_logprobs,
            context_length=self.context_length,
            decoder=self._decoder(room),
        )

    def _decoder(self, max_tokens: int):
        """A decode step over a preallocated KV cache sized for this generation."""
        import torch

        model = self.engine_model
        cache = model.new_cache(max_tokens)

        def step(ids: list[int]) -> Any:
            out = model(torch.tensor([ids], dtype=torch.long, device=model.device), cache, logits_to_keep=1)
            return out.logits[0, -1].cpu()

        return step

    def logits(self, ids: Sequence[int], keep: int = 1) -> Any:
        import torch

        keep = max(1, min(keep, len(ids)))
        model = self.engine_model
        out = model(torch.tensor([list(ids)], dtype=torch.long, device=model.device), logits_to_keep=keep)
        return out.logits[0, -keep:].cpu()

    def recommended_sampling(self) -> dict[str, float]:
        from llmcli.models.registry import ALIASES

        if self.ref.alias:
            return dict(ALIASES[self.ref.alias].sampling)
        try:
            config = json.loads((self.path / "generation_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if config.get("do_sample") is not True:
            return {}
        keys = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")
        return {k: config[k] for k in keys if config.get(k) is not None}

    # ---------------------------------------------------------------- views on transformers' modules

    @property
    def model(self) -> Any:
        """The transformers model, for the views that run its own modules (loaded once)."""
        return self.hf().model

    def hf(self) -> LoadedModel:
        if self._hf is None:
            from dataclasses import replace

            from llmcli.models import load_model

            self._hf = load_model(self.ref.name, replace(self.options, engine="transformers", compile=False))  # the views run no decode steps
        return self._hf

    def summary(self) -> Any:
        from llmcli.inspect.architecture import summary

        dtype = str(self.engine_model.dtype).removeprefix("torch.")
        return summary(self.engine_model, self.ref, dtype, str(self.engine_model.device), self.options.quantize, self.options.compile)

    def info(self) -> Any:
        from dataclasses import replace

        from llmcli.inspect.architecture import model_info

        return replace(model_info(self.hf()), engine=self.engine)


ENGINE_FORMAT = 2  # bump when the engine's weight layout changes: every prepared file is rebuilt


def prepared_path(model_dir: Path, variant: str) -> Path:
    """Where the engine keeps its own layout of `model_dir`'s weights in llmcli's cache, for one
    `variant` (the dtype; for quantized weights also the mode, torch's version and the CPU's
    vector extension, which torch's int4 packing depends on); the name changes when the weights
    do (their paths, sizes and mtimes)."""
    import hashlib

    from llmcli.engine.weights import weight_files
    from llmcli.models.cache import cache_dir

    files = weight_files(model_dir)
    stamp = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    key = hashlib.sha256(f"{stamp}|{variant}|{ENGINE_FORMAT}".encode()).hexdigest()[:16]
    return cache_dir() / "engine" / f"{Path(model_dir).name}-{key}.safetensors"
