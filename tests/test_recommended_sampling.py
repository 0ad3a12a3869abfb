"""Sampling flags the user leaves out take the model's recommended values.

Built-in aliases carry their model card's values; a Hugging Face model its
generation_config.json (when it asks for sampling). A flag on the command line always
wins, a chat continued with --load keeps its saved settings, and compare keeps one set of
settings for every side.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmcli.render import sampling_words
from llmcli.sampling import SamplingSettings
from llmcli.models import load_model, recommended_sampling

GREEDY_TOP_K = {"do_sample": True, "temperature": 0.0, "top_k": 3}


def with_generation_config(src: Path, dst: Path, config: dict | None) -> Path:
    shutil.copytree(src, dst)
    if config is not None:
        data = json.loads((dst / "generation_config.json").read_text())
        (dst / "generation_config.json").write_text(json.dumps({**data, **config}))
    return dst


@pytest.fixture(scope="module")
def recommending_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny instruct model whose generation_config recommends greedy decoding with top-k 3."""
    return with_generation_config(tiny_model_dir, tmp_path_factory.mktemp("recommending") / "m", GREEDY_TOP_K)


@pytest.mark.integration
def test_the_smollm2_alias_samples_with_its_model_cards_values(real_cache, cli):
    """SmolLM2-135M-Instruct's model card generates with temperature 0.2 and top-p 0.9; what
    the engine ran with is what `generate --json` reports, and a typed flag replaces only itself."""
    left_out = generate_json(cli, "-m", "smollm2")["settings"]
    assert (left_out["temperature"], left_out["top_p"], left_out["top_k"]) == (0.2, 0.9, None)
    typed = generate_json(cli, "-m", "smollm2", "-t", "0.5")["settings"]
    assert (typed["temperature"], typed["top_p"]) == (0.5, 0.9)
    gemma = generate_json(cli, "-m", "gemma3-270m")["settings"]  # a base model with no card values: llmcli's own
    assert (gemma["temperature"], gemma["top_p"]) == (0.7, None)


@pytest.mark.parametrize(
    "config, expected",
    [
        (GREEDY_TOP_K, {"temperature": 0.0, "top_k": 3}),
        ({"do_sample": True, "temperature": 0.6, "top_p": 0.95, "repetition_penalty": 1.05}, {"temperature": 0.6, "top_p": 0.95, "repetition_penalty": 1.05}),
        ({"do_sample": False, "temperature": 0.6}, {}),  # the model asks for greedy: nothing to recommend
        ({"temperature": 0.6}, {}),
        (None, {}),  # transformers' saved defaults only
    ],
)
def test_a_hugging_face_model_recommends_its_generation_config(tiny_model_dir, tmp_path, config, expected):
    path = with_generation_config(tiny_model_dir, tmp_path / "m", config)
    assert recommended_sampling(load_model(str(path))) == expected


def test_a_missing_or_broken_generation_config_recommends_nothing(tiny_model_dir, tmp_path):
    path = with_generation_config(tiny_model_dir, tmp_path / "m", None)
    (path / "generation_config.json").unlink()
    assert recommended_sampling(load_model(str(path))) == {}
    (path / "generation_config.json").write_text("{not json")
    assert recommended_sampling(load_model(str(path))) == {}


def generate_json(cli, *args) -> dict:
    r = cli("generate", *args, "--json", "-n", "6", "The cat")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_generate_uses_the_recommendation_for_flags_left_out(cli, recommending_dir, tiny_model_dir):
    recommended = generate_json(cli, "-m", recommending_dir)
    assert recommended["settings"]["temperature"] == 0.0 and recommended["settings"]["top_k"] == 3
    greedy = generate_json(cli, "-m", tiny_model_dir, "-t", "0")
    assert recommended["token_ids"] == greedy["token_ids"]  # the recommended greedy decoding ran


def test_a_flag_on_the_command_line_wins(cli, recommending_dir):
    data = generate_json(cli, "-m", recommending_dir, "-t", "0.7", "--seed", "1")
    assert data["settings"]["temperature"] == 0.7 and data["settings"]["top_k"] == 3


def test_chat_uses_the_recommendation_and_a_loaded_chat_keeps_its_settings(cli, recommending_dir, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    r = cli("chat", "-m", recommending_dir, "-n", "2", input=f"/save {first}\n")
    assert r.exit_code == 0, r.stderr
    saved = json.loads(first.read_text())["settings"]
    assert saved["temperature"] == 0.0 and saved["top_k"] == 3

    data = json.loads(first.read_text())
    data["settings"].update(temperature=0.9, top_k=None)
    first.write_text(json.dumps(data))
    r = cli("chat", "-m", recommending_dir, "--load", str(first), input=f"/save {second}\n")
    assert r.exit_code == 0, r.stderr
    kept = json.loads(second.read_text())["settings"]
    assert kept["temperature"] == 0.9 and kept["top_k"] is None


def test_compare_keeps_one_set_of_settings_for_every_side(cli, recommending_dir, tiny_base_dir):
    r = cli("compare", "-m", tiny_base_dir, "-m", recommending_dir, "The cat", "-n", "2", "--json")
    assert r.exit_code == 0, r.stderr
    settings = json.loads(r.stdout)["settings"]
    assert settings["temperature"] == 0.7 and settings["top_k"] is None


@pytest.mark.parametrize(
    "settings, words",
    [
        (SamplingSettings(temperature=0, top_k=5), "greedy (temperature 0)"),
        (SamplingSettings(temperature=0.2, top_p=0.9), "temperature 0.2, top-p 0.9"),
        (SamplingSettings(temperature=0.7, top_k=40, min_p=0.05, repetition_penalty=1.1), "temperature 0.7, top-k 40, min-p 0.05, repetition penalty 1.1"),
        (SamplingSettings(temperature=1, top_p=1.0, top_k=0), "temperature 1"),
    ],
)
def test_the_sampling_in_effect_in_words(settings, words):
    """As the chat header and compare's footer say it."""
    assert ", ".join(sampling_words(settings)) == words
