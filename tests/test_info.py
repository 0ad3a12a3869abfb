"""`llmcli info` and `llmcli models` on the tiny models."""

from __future__ import annotations

import json

import pytest

from llmcli import models
from llmcli.inspect.architecture import count_parameters, part_of


def test_info_json_matches_the_loaded_model(cli, tiny_model_dir):
    r = cli("info", "-m", tiny_model_dir, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    loaded = models.load_model(str(tiny_model_dir))
    config = loaded.model.config
    assert data["layers"] == config.num_hidden_layers
    assert data["hidden_size"] == config.hidden_size
    assert data["attention_heads"] == config.num_attention_heads
    assert data["kv_heads"] == config.num_key_value_heads
    assert data["vocab_size"] == config.vocab_size
    assert data["context_length"] == config.max_position_embeddings
    assert data["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert sum(data["parameters_by_part"].values()) == data["parameters"]
    assert data["memory_bytes"]["float32"] == 4 * data["parameters"]
    assert data["resident_bytes"] == 4 * data["parameters"] and data["quantized_layers"] == {}
    assert data["chat_template"] is True
    assert data["tied_embeddings"] is True and data["parameters_by_part"]["output_head"] == 0
    eos = next(t for t in data["special_tokens"] if t["role"] == "eos")
    assert eos["id"] == loaded.tokenizer.eos_token_id


def test_info_of_a_quantized_model_counts_the_same_parameters(cli, tiny_model_dir):
    plain = json.loads(cli("info", "-m", tiny_model_dir, "--json").stdout)
    r = cli("info", "-m", tiny_model_dir, "--quantize", "int4", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["parameters_by_part"] == plain["parameters_by_part"]
    config = models.load_model(str(tiny_model_dir)).model.config
    assert data["quantized_layers"] == {"int4": 7 * config.num_hidden_layers, "int8": 1}  # 7 per layer, the head
    # 4-bit layers, an 8-bit head beside the float embedding it was tied to, float norms
    assert data["resident_bytes"] < plain["resident_bytes"] / 2
    table = cli("info", "-m", tiny_model_dir, "--quantize", "int4").stdout
    assert f"{7 * config.num_hidden_layers} at int4, 1 at int8" in table


def test_info_of_a_base_model_says_no_template(cli, tiny_base_dir):
    data = json.loads(cli("info", "-m", tiny_base_dir, "--json").stdout)
    assert data["chat_template"] is False


def test_info_table_is_plain_when_piped(cli, tiny_model_dir):
    """Piped: no escape codes, no trailing padding, one `key  value` line per fact."""
    r = cli("info", "-m", tiny_model_dir)
    assert r.exit_code == 0
    assert "\x1b" not in r.stdout
    lines = r.stdout.splitlines()
    assert all(line == line.rstrip() for line in lines)
    facts = dict(line.strip().split("  ", 1) for line in lines if "  " in line.strip())
    facts = {key: value.strip() for key, value in facts.items()}
    assert facts["layers"] == "2" and facts["hidden size"] == "64" and facts["vocabulary"] == "512"
    assert facts["attention heads"] == "4 query, 2 key/value, head dim 16"


@pytest.mark.parametrize(
    "name, part",
    [
        ("model.embed_tokens.weight", "embeddings"),
        ("model.layers.0.self_attn.q_proj.weight", "attention"),
        ("model.layers.0.self_attn.q_norm.weight", "norms"),
        ("model.layers.3.mlp.down_proj.weight", "mlp"),
        ("model.layers.3.post_attention_layernorm.weight", "norms"),
        ("model.norm.weight", "norms"),
        ("lm_head.weight", "output_head"),
    ],
)
def test_part_of(name, part):
    assert part_of(name) == part


def test_untied_head_is_counted(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=False)
    counts = count_parameters(model)
    assert counts["output_head"] == model.lm_head.weight.numel()
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())


def test_models_lists_and_removes_cache_entries(cli, cache_dir, tiny_gguf):
    models.load_model(str(tiny_gguf))
    listing = json.loads(cli("models", "--json").stdout)
    names = [c["name"] for c in listing["cache"]]
    assert names == [models.cache_entry(tiny_gguf).name]

    r = cli("models", "rm", "nothing-like-it")
    assert r.exit_code == 1 and "no cache entry" in r.stderr
    r = cli("models", "rm", names[0])
    assert r.exit_code == 0
    assert json.loads(cli("models", "--json").stdout)["cache"] == []
