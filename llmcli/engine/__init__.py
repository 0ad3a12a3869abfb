"""llmcli's own forward pass for the decoder families people run locally, in plain torch.

    from llmcli.engine import load, load_tokenizer, UnsupportedModel
    model = load(model_dir)                       # Llama/SmolLM2, Mistral, Qwen2, Qwen3, Gemma 3 text
    tokenizer = load_tokenizer(model_dir)         # tokenizer.json + chat template, no transformers
    cache = model.new_cache(max_tokens=1024)
    logits = model(torch.tensor([tokenizer.encode("Hello")]), cache).logits

One module per concern: `config` (config.json -> EngineConfig, with transformers' defaults),
`weights` (safetensors -> fused parameters), `rope`, `attention`, `cache`, `model`,
`tokenizer`, `chat_template`. Nothing here imports transformers: loading transformers' model code
and AutoTokenizer costs seconds of a cold start, and transformers stays the reference the tests
compare against and the fallback for every model this raises `UnsupportedModel` on.
"""

from llmcli.engine.cache import KVCache
from llmcli.engine.config import EngineConfig, UnsupportedModel, read_config
from llmcli.engine.model import EngineModel, EngineOutput, load
from llmcli.engine.tokenizer import EngineTokenizer, load_tokenizer

__all__ = [
    "EngineConfig",
    "EngineModel",
    "EngineOutput",
    "EngineTokenizer",
    "KVCache",
    "UnsupportedModel",
    "load",
    "load_tokenizer",
    "read_config",
]
