"""The decoder: embedding, blocks of (norm, attention, norm, MLP) with residuals, final norm, head.

    model = load(model_dir)                       # EngineModel, an nn.Module in inference mode
    cache = model.new_cache(max_tokens=512)
    out = model(prompt_ids, cache)                # prefill: logits of the last position
    out = model(next_id[None, None], cache)       # one decode step

One class covers Llama (SmolLM2), Mistral, Qwen2, Qwen3 and Gemma 3 text; `EngineConfig` holds
what differs between them, each difference commented where it acts. The arithmetic follows
transformers' modeling code operation by operation (same dtypes, same order of casts), so float32
logits agree with it to float rounding.

`model.compile_decode()` (`--compile`) runs the one-token steps through torch.compile.

The Linear layers are plain `nn.Linear`s and the model has `get_input_embeddings` /
`get_output_embeddings`, so `llmcli.quantize.quantize_model` can swap them in place as it does
for a transformers model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmcli.engine import attention
from llmcli.engine.cache import KVCache
from llmcli.engine.config import EngineConfig, UnsupportedModel, read_config
from llmcli.engine.rope import RopeTable, apply_rope
from llmcli.engine.weights import prepared_weights, read_weights

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass
class EngineOutput:
    logits: torch.Tensor  # float32 [batch, kept positions, vocab]
    # With output_hidden_states: num_layers + 1 tensors [batch, tokens, hidden] — the (scaled)
    # embeddings, then each block's output, the last one after the final norm (as transformers
    # returns them: hidden_states[-1] is what the head reads).
    hidden_states: tuple[torch.Tensor, ...] | None = None
    # With output_attentions: one [batch, heads, tokens, past + tokens] per layer, rows summing to 1;
    # positions a sliding window hides have weight 0.
    attentions: tuple[torch.Tensor, ...] | None = None


def _empty(*shape: int) -> nn.Parameter:
    """An uninitialised parameter, for `load` to replace: `torch.empty` only reserves memory, where
    nn.Linear's random init would write every weight (and the meta device imports torch._refs,
    seconds of a cold start)."""
    return nn.Parameter(torch.empty(shape), requires_grad=False)


def _linear(n_in: int, n_out: int, bias: bool) -> nn.Linear:
    """A plain nn.Linear (so llmcli.quantize can swap it) with uninitialised parameters."""
    layer = nn.Linear(1, 1, bias=bias)
    layer.in_features, layer.out_features = n_in, n_out
    layer.weight = _empty(n_out, n_in)
    if bias:
        layer.bias = _empty(n_out)
    return layer


class RMSNorm(nn.Module):
    """Llama: x̂ in float32, cast back, times w in the model's dtype. Gemma (`gemma=True`): x̂ * (1 + w)
    all in float32, then cast; `weight` then already holds 1 + w in float32 (see weights.py)."""

    def __init__(self, dim: int, eps: float, gemma: bool):
        super().__init__()
        self.weight = _empty(dim)
        self.eps, self.gemma = eps, gemma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[-1],)
        if x.dtype == torch.float32:  # every cast is a no-op (Gemma's weight is float32 already)
            return F.rms_norm(x, shape, self.weight, self.eps)
        if self.gemma:
            return F.rms_norm(x.float(), shape, self.weight, self.eps).to(x.dtype)
        return self.weight * F.rms_norm(x.float(), shape, eps=self.eps).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: EngineConfig, layer: int):
        super().__init__()
        c = config
        self.heads, self.kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
        self.qkv = _linear(c.hidden_size, (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.qkv_bias)
        self.o = _linear(c.num_heads * c.head_dim, c.hidden_size, c.o_bias)
        # Qwen3 / Gemma 3: an RMSNorm over each head's dimensions, on queries and keys, before RoPE.
        self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps, c.gemma_norms) if c.qk_norm else None
        self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps, c.gemma_norms) if c.qk_norm else None
        self.scale = c.attn_scale  # head_dim^-0.5; Gemma: query_pre_attn_scalar^-0.5
        self.window = c.windows[layer]
        self.layer = layer

    def forward(self, x, shape, cos, sin, cache: KVCache | None, want_weights: bool):
        b, t = shape
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        # The queries and keys sit side by side in the projection's output: one RoPE for both.
        qk, v = self.qkv(x).split(((h + kv) * d, kv * d), dim=-1)
        qk = qk.view(b, t, h + kv, d)
        if self.q_norm is not None:
            qk = torch.cat((self.q_norm(qk[:, :, :h]), self.k_norm(qk[:, :, h:])), dim=2)
        qk = apply_rope(qk.transpose(1, 2), cos, sin)
        q, k = qk[:, :h], qk[:, h:]
        v = v.view(b, t, kv, d).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if want_weights:
            out, weights = attention.eager(q, k, v, self.scale, self.window)
        else:
            out, weights = attention.sdpa(q, k, v, self.scale, self.window), None
        return self.o(out.transpose(1, 2).reshape(b * t, -1)), weights


class MLP(nn.Module):
    """Gated MLP: down(act(gate(x)) * up(x)), gate and up as one matrix. Llama/Qwen/Mistral use
    SiLU (SwiGLU); Gemma uses tanh-approximated GELU (GeGLU)."""

    def __init__(self, config: EngineConfig):
        super().__init__()
        c = config
        self.gate_up = _linear(c.hidden_size, 2 * c.intermediate_size, c.mlp_bias)
        self.down = _linear(c.intermediate_size, c.hidden_size, c.mlp_bias)
        self.gelu = c.activation == "gelu_tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        gate = F.gelu(gate, approximate="tanh") if self.gelu else F.silu(gate)
        return self.down(gate * up)


class Block(nn.Module):
    def __init__(self, config: EngineConfig, layer: int):
        super().__init__()
        c = config
        self.attn_norm = RMSNorm(c.hidden_size, c.rms_norm_eps, c.gemma_norms)
        self.attn = Attention(c, layer)
        self.mlp_norm = RMSNorm(c.hidden_size, c.rms_norm_eps, c.gemma_norms)
        self.mlp = MLP(c)
        # Gemma also normalises each sublayer's output before adding it to the residual stream.
        self.post_attn_norm = RMSNorm(c.hidden_size, c.rms_norm_eps, True) if c.gemma_norms else None
        self.post_mlp_norm = RMSNorm(c.hidden_size, c.rms_norm_eps, True) if c.gemma_norms else None

    def forward(self, x, shape, cos, sin, cache, want_weights):
        h, weights = self.attn(self.attn_norm(x), shape, cos, sin, cache, want_weights)
        if self.post_attn_norm is not None:
            h = self.post_attn_norm(h)
        x = x + h
        h = self.mlp(self.mlp_norm(x))
        if self.post_mlp_norm is not None:
            h = self.post_mlp_norm(h)
        return x + h, weights


class EngineModel(nn.Module):
    def __init__(self, config: EngineConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config, self.dtype = config, dtype
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size, _weight=_empty(config.vocab_size, config.hidden_size))
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.gemma_norms)
        self.lm_head = _linear(config.hidden_size, config.vocab_size, False)
        # Gemma scales the embeddings by sqrt(hidden_size), rounded to the model's dtype as transformers does.
        self.embed_scale = None
        if config.embed_scale is not None:
            self.embed_scale = torch.tensor(config.embed_scale, dtype=torch.float32, device="cpu").to(dtype)
        self._tables: dict = {}  # Rope -> RopeTable, shared by the layers that use the same rope
        self._ropes = list(dict.fromkeys(config.ropes))  # the distinct ones (Gemma 3: two)
        self._rope_of_layer = [self._ropes.index(rope) for rope in config.ropes]
        self._compiled_step = None  # see compile_decode

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def new_cache(self, max_tokens: int, batch: int = 1) -> KVCache:
        c, compiled = self.config, self._compiled_step is not None
        # For the compiled step: one spare position, because a step whose keys reach the buffer's
        # very end is a case torch.compile specialises (it would compile again for the last
        # token); and the positions axis marked dynamic, as torch.compile takes a tensor found on
        # an object for a fixed size and each generation sizes its cache anew.
        cache = KVCache(c.num_layers, batch, c.num_kv_heads, max_tokens, c.head_dim, self.dtype, self.device, spare=int(compiled))
        if compiled:
            for buffer in cache.keys + cache.values:
                torch._dynamo.maybe_mark_dynamic(buffer, 2)
        return cache

    def _table(self, rope) -> RopeTable:
        if rope not in self._tables:
            self._tables[rope] = RopeTable(rope, self.config.head_dim, self.dtype, self.device)
        return self._tables[rope]

    @torch.no_grad()  # not inference_mode: its tensors refuse in-place ops afterwards, which callers may do
    def forward(
        self,
        ids: torch.Tensor,
        cache: KVCache | None = None,
        *,
        logits_to_keep: int = 1,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EngineOutput:
        """Run `ids` [batch, tokens] (following what `cache` holds, if given) through the model.

        `logits_to_keep`: logits for the last N positions (0 = all), as transformers' argument.
        Without a cache the tokens start at position 0 and nothing is kept. Attention weights
        switch the attention to the eager path (the softmax written out).
        """
        if ids.dim() != 2:
            raise ValueError(f"ids must be [batch, tokens], got shape {tuple(ids.shape)}")
        batch, new = ids.shape
        start = 0
        if cache is not None:
            cache.check_room(batch, new)
            start = cache.length
        tables = [self._table(rope).covering(start + new) for rope in self._ropes]  # eagerly: a table may grow
        if self._compiled_step is not None and new == 1 and cache is not None and not (output_hidden_states or output_attentions):
            # A fresh tensor: a slice of a longer one has other strides, which the graph guards on.
            ids = ids.clone(memory_format=torch.contiguous_format)
            logits, hidden, weights = self._compiled_step(ids, cache, start, tables, logits_to_keep, False, False)
        else:
            logits, hidden, weights = self._run(ids, cache, start, tables, logits_to_keep, output_hidden_states, output_attentions)
        if cache is not None:
            cache.length = start + new
        return EngineOutput(logits, hidden, weights)

    def _run(self, ids, cache, start, tables, logits_to_keep, output_hidden_states, output_attentions):
        batch, new = ids.shape
        tables = [(cos[start : start + new], sin[start : start + new]) for cos, sin in tables]
        # The blocks work on rows [batch * tokens, hidden]: what the matrix products take as it is.
        x = self.embed(ids.reshape(-1))
        if self.embed_scale is not None:
            x = x * self.embed_scale
        hidden = [x] if output_hidden_states else None
        weights = [] if output_attentions else None
        for block, rope in zip(self.layers, self._rope_of_layer):
            x, w = block(x, (batch, new), *tables[rope], cache, output_attentions)
            if hidden is not None:
                hidden.append(x)
            if weights is not None:
                weights.append(w)
        x = self.norm(x).view(batch, new, -1)
        if hidden is not None:
            hidden[-1] = x
            hidden = tuple(h.view(batch, new, -1) for h in hidden)
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x)
        if (cap := self.config.final_logit_softcapping) is not None:
            logits = torch.tanh(logits / cap) * cap  # Gemma: squash into (-cap, cap)
        return logits.float(), hidden, tuple(weights) if weights is not None else None

    def compile_decode(self) -> None:
        """Run one-token steps over a cache through `torch.compile` from now on, compiled here on a
        throwaway cache (tens of seconds; inductor caches its work, so a later process is quicker).
        Prompts, hidden states and attention weights stay eager.

        Inductor fuses the ~1,000 small ops of a step (norms, RoPE, casts, residual adds, the
        cache write) into a few dozen C++ loops around the matrix products. `dynamic`: one graph
        for every cache length and size (new_cache marks the size), not one per position."""
        # The model's float constants (norm eps, attention scale) as constants: left symbolic, as
        # `dynamic` makes them, dynamo traces the whole step, gives up on them and traces it again
        # (a warm start took 23 s instead of 11). Process-wide, which suits any model compiled here.
        torch._dynamo.config.specialize_float = True
        self._compiled_step = torch.compile(self._run, dynamic=True)
        cache = self.new_cache(8)
        self(torch.zeros((1, 4), dtype=torch.long, device=self.device), cache)  # a prompt: eager
        self(torch.zeros((1, 1), dtype=torch.long, device=self.device), cache)  # a step: compiles


def load(
    model_dir: Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", *, prepared: Path | None = None
) -> EngineModel:
    """Build the engine's model from a Hugging Face directory (config.json + safetensors).

    `prepared`: a file of the engine's own weights (fused, renamed, in `dtype`): read from it
    when it exists, written there first when not (see `weights.prepared_weights`), so a load
    maps the file instead of building the fused projections again.
    Raises UnsupportedModel for anything the engine does not implement exactly; the caller then
    loads the model with transformers instead.
    """
    if dtype not in _DTYPES:
        raise UnsupportedModel(f"dtype {dtype} (the engine runs float32, bfloat16 or float16)")
    config = read_config(Path(model_dir))
    if prepared is None:
        state = read_weights(Path(model_dir), config, dtype)
    else:
        state = prepared_weights(Path(model_dir), config, dtype, prepared)
    model = EngineModel(config, dtype)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # shapes that contradict config.json
        raise UnsupportedModel(f"the weights do not fit config.json: {str(e).splitlines()[-1].strip()}") from e
    if state["lm_head.weight"] is state["embed.weight"]:
        model.lm_head.weight = model.embed.weight  # tied: one tensor, as in transformers
    for p in model.parameters():
        p.requires_grad_(False)
    model = model.to(device).eval()
    if model.embed_scale is not None:
        model.embed_scale = model.embed_scale.to(device)
    return model
