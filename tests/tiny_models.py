"""Tiny, offline stand-ins for a real chat model (SmolLM2-like), for the test suite.

Everything here is built from nothing in a second or two: a byte-level BPE tokenizer trained on a
handful of sentences, a 2-layer Llama with random weights, and the same model written as a GGUF the
way llama.cpp's `convert_hf_to_gguf.py` would write it.

    hf_dir = build_tiny_model(tmp_path / "tiny")                 # instruct model with ChatML
    base_dir = build_tiny_model(tmp_path / "base", chat_template=False)
    gguf = write_tiny_gguf(hf_dir, tmp_path / "gguf" / "tiny.gguf")

Give the GGUF a directory of its own. `AutoTokenizer.from_pretrained(dir, gguf_file=...)` still
looks in `dir` for a `tokenizer_config.json` to pick the tokenizer class; next to the HF files that
one would be used, and the GGUF would not be tested on its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]  # ids 0, 1, 2, as in SmolLM2

VOCAB_SIZE = 512  # 259 specials and bytes, and ~250 merges learned from TRAINING_TEXT

# SmolLM2-Instruct's template, minus its default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Varied on purpose: the merges should cover words, digits, code, punctuation and non-ASCII, so the
# tests can encode ordinary prompts into a handful of tokens rather than one token per byte.
TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you today?",
    "Once upon a time, there was a little robot who loved to read.",
    "What is the capital of France? The capital of France is Paris.",
    "The answer is 42, and 3 + 4 = 7.",
    "In 2024, the model had 135 million parameters.",
    "Temperature 0.7, top_p 0.95, top_k 50, max_new_tokens 128.",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i * i)\n",
    "import torch\nx = torch.zeros(3, 4)\n",
    "if (x > 0 && y < 10) { return x; }",
    '{"role": "user", "content": "Tell me a joke."}',
    "Café, naïve, résumé, déjà vu, crème brûlée, jalapeño.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "¿Dónde está la biblioteca? Está aquí.",
    "I love pizza 🍕 and coffee ☕ in the morning!",
    "Emoji test: 😀 🎉 👍 — all good.",
    "The sun rises in the east and sets in the west.",
    "Water boils at 100 degrees Celsius at sea level.",
    "She sells sea shells by the sea shore.",
    "A language model predicts the next token from the previous tokens.",
    "Greedy decoding always picks the most likely token.",
    "Sampling with a temperature makes the output more varied.",
    "Please summarize the following text in one sentence.",
    "You are a helpful assistant.",
    "The user asked a question, and the assistant answered it.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 -2.5e-3",
    "Punctuation: ... !!! ??? ;; :: -- (parentheses) [brackets] {braces}",
    "Tabs\tand  double  spaces   and\nnewlines\n\nare whitespace.",
    "Email me at someone@example.com or visit https://example.org/path?q=1.",
    "It's a dog's life; they're sure we'll win, I'd say.",
    "Machine learning is fun, and transformers are powerful.",
    "The cat sat on the mat. The dog sat on the log.",
    "Rust, Python, and Go are programming languages.",
    "SELECT name FROM users WHERE age > 30;",
    "Good morning! Good night! Good luck!",
]


def train_tokenizer() -> Tokenizer:
    """A byte-level BPE tokenizer in the shape of SmolLM2's `tokenizer.json`.

    The pre-tokenizer is plain `ByteLevel` with GPT-2's split regex and no prefix space. That is
    exactly what transformers' `GPT2Tokenizer` rebuilds from a GGUF whose `tokenizer.ggml.pre` it
    does not know (SmolLM2's GGUFs say "smollm", which llama.cpp also maps to the GPT-2 regex), so
    the HF and GGUF tokenizers split text the same way. `initial_alphabet` holds all 256 byte
    symbols, so any text is encodable and decodes back exactly.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    return tokenizer


def build_tiny_tokenizer(path: Path, *, chat_template: bool = True) -> PreTrainedTokenizerFast:
    """Train the tokenizer and save it with `save_pretrained` into `path`; return it.

    Like SmolLM2: no BOS on encode (there is no post-processor adding one), eos `<|im_end|>`,
    pad `<|endoftext|>`. With `chat_template=False` the argument is not passed at all: an explicit
    `chat_template=None` is saved as `"chat_template": null` in `tokenizer_config.json`. A set
    template goes to `chat_template.jinja` (transformers 5), not into the JSON.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    template = {"chat_template": CHATML_TEMPLATE} if chat_template else {}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        add_bos_token=False,
        add_eos_token=False,
        **template,
    )
    tokenizer.save_pretrained(path)
    if not chat_template:
        _strip_chat_template(path)
    return tokenizer


def _strip_chat_template(path: Path) -> None:
    """Make sure a base model's directory holds no chat template in any of the places one can live."""
    for name in ("chat_template.jinja", "chat_template.json"):
        (path / name).unlink(missing_ok=True)
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if "chat_template" in config:
        del config["chat_template"]
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# The model. Sized so that a forward pass is instant, yet every code path of a real Llama is used:
# grouped-query attention (4 query heads share 2 kv heads), RoPE, SwiGLU, tied embeddings.
HIDDEN_SIZE = 64
INTERMEDIATE_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
MAX_POSITIONS = 128
RMS_NORM_EPS = 1e-5
ROPE_THETA = 100000.0  # SmolLM2's; not the config default, so a GGUF that lost it would show in the logits
# Far above the usual 0.02: logits are about `initializer_range * sqrt(hidden_size)` wide, and at
# 0.02 every next-token distribution is close to uniform, which makes top-k tables and greedy
# generation meaningless.
INITIALIZER_RANGE = 0.2


def tiny_llama_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The model's config, with its vocabulary and special ids taken from `tokenizer`."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=RMS_NORM_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        initializer_range=INITIALIZER_RANGE,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )


def build_tiny_model(path: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a random 2-layer Llama and its tokenizer into `path` in Hugging Face format; return `path`.

    `chat_template=False` gives a "base model": its tokenizer has no chat template at all.
    The weights depend only on `seed` (the tokenizer training is deterministic too), so two calls
    with the same seed give the same model. With seed 0 greedy decoding of 20 tokens from a short
    prompt does not produce `<|im_end|>` (test_tiny_models checks this).
    """
    path = Path(path)
    tokenizer = build_tiny_tokenizer(path, chat_template=chat_template)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(tokenizer)).to(torch.float32).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    return path


# --- GGUF -----------------------------------------------------------------------------------------

# transformers name (inside `model.layers.N.`) -> llama.cpp name (inside `blk.N.`)
_LAYER_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def permute_for_gguf(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` from `convert_hf_to_gguf.py`, applied to q_proj and k_proj.

    HF Llama rotates the two halves of each head (`rotate_half`); llama.cpp's rope rotates
    interleaved pairs. The converter reorders the rows of each head from `[x0..x(d/2-1), y0..]` to
    `[x0, y0, x1, y1, ...]`, and transformers' `LlamaTensorProcessor._reverse_permute_weights`
    undoes it on load. For k the head count is the kv head count.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_tensors(model: LlamaForCausalLM) -> dict[str, np.ndarray]:
    """The model's weights as float32 arrays under llama.cpp names, q/k permuted.

    `output.weight` is left out when the embeddings are tied: that absence is how a GGUF says
    "tied", and transformers sets `tie_word_embeddings` from it.
    """
    config = model.config
    state = {name: tensor.detach().to(torch.float32).numpy() for name, tensor in model.state_dict().items()}
    tensors = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
    }
    if not config.tie_word_embeddings:
        tensors["output.weight"] = state["lm_head.weight"]
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in _LAYER_TENSORS.items():
            weights = state[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weights = permute_for_gguf(weights, config.num_attention_heads, config.num_attention_heads)
            elif gguf_name == "attn_k":
                weights = permute_for_gguf(weights, config.num_attention_heads, config.num_key_value_heads)
            tensors[f"blk.{layer}.{gguf_name}.weight"] = np.ascontiguousarray(weights)
    return tensors


def _add_hyperparameters(writer, config: LlamaConfig) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)


def _add_tokenizer(writer, hf_dir: Path) -> None:
    """The tokenizer as llama.cpp stores a byte-level BPE one (`tokenizer.ggml.model` "gpt2").

    Tokens are written in the byte-to-unicode spelling of `tokenizer.json` (a space is "Ġ"),
    merges as "left right" strings, and the special tokens typed CONTROL: transformers adds the
    CONTROL ones back as special tokens, without which `<|im_start|>` would be cut into pieces.
    `pre` is "smollm", SmolLM2's: llama.cpp splits it with the GPT-2 regex, and transformers, which
    has no entry for it in `GGUF_PRE_TOKENIZER_SPLITS`, keeps `GPT2Tokenizer`'s own `ByteLevel`
    split, which is the same regex. A `pre` it does know swaps in another regex, and then the
    tokenizers disagree: with "llama-bpe" (Llama 3's), "In 2024" becomes `In`, `Ġ`, `2`, `02`, `4`
    from the GGUF but `In`, `Ġ2`, `02`, `4` from tokenizer.json, since that regex splits numbers
    from the space before them.
    `add_bos_token` is written False explicitly rather than left to a reader's default (SmolLM2
    prompts carry no BOS; transformers only defaults it to True for "llama" vocabularies, and
    llama.cpp's default has depended on the pre-tokenizer).
    """
    tokens, token_types, merges = _vocabulary(hf_dir)
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer_config = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab[tokenizer_config["bos_token"]])
    writer.add_eos_token_id(vocab[tokenizer_config["eos_token"]])
    writer.add_pad_token_id(vocab[tokenizer_config["pad_token"]])
    if tokenizer_config.get("unk_token") is not None:
        writer.add_unk_token_id(vocab[tokenizer_config["unk_token"]])
    writer.add_add_bos_token(False)
    template = _read_chat_template(hf_dir)
    if template is not None:
        writer.add_chat_template(template)


def _vocabulary(hf_dir: Path) -> tuple[list[str], list[gguf.TokenType], list[str]]:
    """`(tokens by id, their types, merges as "left right")` from a saved `tokenizer.json`."""
    tokenizer_json = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(tokenizer_json["model"]["vocab"])
    special = set()
    for added in tokenizer_json["added_tokens"]:
        vocab[added["content"]] = added["id"]
        if added["special"]:
            special.add(added["content"])
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[token] for token in tokens] != list(range(len(tokens))):
        raise ValueError("a GGUF token list is indexed by id, so the ids must be 0..n-1 with no gaps")
    token_types = [gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token in tokens]
    # recent `tokenizers` save a merge as a pair, older ones as one "left right" string
    saved_merges = tokenizer_json["model"]["merges"]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in saved_merges]
    return tokens, token_types, merges


def _read_chat_template(hf_dir: Path) -> str | None:
    jinja = hf_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    return config.get("chat_template")


def write_tiny_gguf(hf_dir: Path, gguf_path: Path) -> Path:
    """Write the model saved in `hf_dir` (by `build_tiny_model`) as an F32 GGUF at `gguf_path`.

    Laid out the way `convert_hf_to_gguf.py` lays out a Llama, so that transformers' GGUF loader
    reads it back to the identical model and an equivalent tokenizer.
    """
    hf_dir, gguf_path = Path(hf_dir), Path(gguf_path)
    gguf_path.parent.mkdir(parents=True, exist_ok=True)
    model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)

    writer = gguf.GGUFWriter(gguf_path, "llama")
    writer.add_name("tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_hyperparameters(writer, model.config)
    _add_tokenizer(writer, hf_dir)
    for name, weights in gguf_tensors(model).items():
        writer.add_tensor(name, weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_path


def spm_like_dir(path: Path, model_dir: Path) -> Path:
    """A Gemma-shaped tokenizer saved as a model directory: `▁`, byte fallback, BOS on encode.

    The alphabet is the training text's ASCII characters, so accents, CJK and emoji fall back to
    `<0xNN>` byte tokens. It is given explicitly: with `limit_alphabet` alone the trainer picks
    among equally frequent characters in hash order, which differs from process to process, and
    the vocabulary (which words are one token) changed between runs.
    The model directory's config.json is borrowed so `-m path` resolves it as a model.
    """
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    text = ["".join(c for c in line if c.isascii()) for line in TRAINING_TEXT]
    alphabet = sorted(set("".join(text).replace(" ", "▁")))
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=alphabet, limit_alphabet=len(alphabet), show_progress=False
    )
    tok.train_from_iterator(text, trainer=trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    data["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    path.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(path)
    shutil.copy(model_dir / "config.json", path / "config.json")
    return path
