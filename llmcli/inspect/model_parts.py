"""Finding the parts of a transformers causal LM that the inspection views call directly.

`score`, `lens`, `attention` and `neighbors` run a model's own modules on their own — the
decoder stack, the final norm, the output head, the attention blocks, the embedding matrix —
rather than re-implementing them, so each architecture's quirks (Gemma's RMSNorm scaling by
1 + weight, its √hidden embedding scale, a quantized head) come along for free.

Decisions and gotchas (checked in transformers 5.24's source):
- `model.base_model` is the decoder stack (`LlamaModel`, `Gemma3TextModel`); its
  `last_hidden_state` has already been through the final norm (`hidden_states =
  self.norm(hidden_states)` at the end of `forward`), and `output_hidden_states` ties its last
  entry to that normed state (`capture_outputs(tie_last_hidden_states=True)`). Entries
  0..n-1 are the embedding output and the raw outputs of blocks 0..n-2.
- `final_logit_softcapping` is applied in the `*ForCausalLM.forward`, not in a module:
  `cap * tanh(logits / cap)`. `head_logits` applies it the same way, so the logits equal
  `model(ids).logits`.
- The full [positions x vocabulary] logits are never built at once: Gemma's 262,144-token
  vocabulary makes that 1 MB per position. Callers take the head's output in chunks of
  `chunk_positions(vocab)` positions.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from llmcli.errors import LlmcliError

_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_layer_norm")
_CHUNK_ELEMENTS = 1 << 22  # logits held at once: 4M floats (16 MB in float32)


def text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def decoder(model: Any) -> Any:
    """The decoder stack under the LM head (`model.model` for Llama and Gemma)."""
    return model.base_model


def decoder_layers(model: Any) -> Any:
    layers = getattr(decoder(model), "layers", None) or getattr(decoder(model), "h", None)
    if layers is None:
        raise LlmcliError(
            f"cannot find the decoder layers of {type(model).__name__}",
            "llmcli's inspection views know Llama-, Gemma-, Qwen- and Mistral-style models",
        )
    return layers


def final_norm(model: Any) -> Any:
    """The norm the decoder applies after its last block."""
    for name in _NORM_NAMES:
        module = getattr(decoder(model), name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise LlmcliError(f"cannot find the final norm of {type(model).__name__}", "the logit lens needs the model's own final norm")


def output_head(model: Any) -> Any:
    head = model.get_output_embeddings()
    if head is None:
        raise LlmcliError(f"{type(model).__name__} has no output head", "the logit lens needs a causal language model")
    return head


def softcap(model: Any) -> float | None:
    return getattr(text_config(model), "final_logit_softcapping", None) or None


def head_logits(model: Any, normed: torch.Tensor) -> torch.Tensor:
    """The output head (and the final softcap, when the config sets one) on already-normed states."""
    logits = output_head(model)(normed)
    cap = softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()


def chunk_positions(vocab: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, vocab))


def chunks(length: int, size: int) -> Iterator[slice]:
    for start in range(0, length, size):
        yield slice(start, min(length, start + size))


def tied_head(model: Any) -> bool:
    """True when the output head's weight is the input embedding matrix itself."""
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embedding is None:
        return False
    return head.weight.data_ptr() == embedding.weight.data_ptr()


def embed_scale(model: Any) -> float | None:
    """The factor the embedding module multiplies by (Gemma: √hidden), None when there is none."""
    embedding = model.get_input_embeddings()
    scale = getattr(embedding, "scalar_embed_scale", None)
    if scale is None and isinstance(getattr(embedding, "embed_scale", None), torch.Tensor):
        scale = float(embedding.embed_scale)
    return None if scale is None or scale == 1 else float(scale)


def input_tensor(model: Any, ids: list[int]) -> torch.Tensor:
    return torch.tensor([list(ids)], dtype=torch.long, device=model.device)
