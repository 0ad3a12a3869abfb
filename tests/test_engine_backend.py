"""llmcli's own engine behind the backend seam: chosen by default where it runs a model
exactly, the same results as transformers through the library, transformers otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

import llmcli
from transformers import AutoModelForCausalLM
from llmcli.errors import LlmcliError
from tests.tiny_families import FAMILIES, build_family


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request, tmp_path_factory):
    return request.param, build_family(request.param, tmp_path_factory.mktemp(request.param))


# The engine refuses a byte-level Qwen2 tokenizer.json: AutoTokenizer rebuilds Qwen2's with
# its own regex and NFC normalization, so its ids would differ (llmcli.engine.tokenizer).
TRANSFORMERS_RUNS = {"qwen2"}


def test_auto_picks_the_engine_and_it_matches_transformers(family_dir):
    family, path = family_dir
    ours, theirs = llmcli.load(str(path)), llmcli.load(str(path), engine="transformers")
    expected = "transformers" if family in TRANSFORMERS_RUNS else "llmcli"
    assert ours.backend.engine == expected and theirs.backend.engine == "transformers"
    prompt = ours.prompt("The quick brown fox", mode="raw")
    assert prompt.ids == theirs.prompt("The quick brown fox", mode="raw").ids
    a = ours.generate(prompt, temperature=0, max_new_tokens=12, top_logprobs=3)
    b = theirs.generate(prompt, temperature=0, max_new_tokens=12, top_logprobs=3)
    assert a.token_ids == b.token_ids and a.text == b.text
    for x, y in zip(a.events, b.events):
        assert x.logprob == pytest.approx(y.logprob, abs=1e-4)
        assert [i for i, _, _ in x.top] == [i for i, _, _ in y.top]
    p, q = ours.next_token(prompt, num=5), theirs.next_token(prompt, num=5)
    assert [r.id for r in p.table.rows] == [r.id for r in q.table.rows]
    assert [r.prob for r in p.table.rows] == pytest.approx([r.prob for r in q.table.rows], abs=1e-5)


def test_a_model_the_engine_does_not_run_falls_back_or_says_so(tiny_model_dir, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd)
    config = json.loads((odd / "config.json").read_text())
    config["rope_scaling"] = config["rope_parameters"] = {"rope_type": "yarn", "factor": 2.0, "rope_theta": 100000.0}
    (odd / "config.json").write_text(json.dumps(config))
    assert llmcli.load(str(odd)).backend.engine == "transformers"  # auto: transformers runs it
    with pytest.raises(LlmcliError, match="llmcli's engine does not run this model") as e:
        llmcli.load(str(odd), engine="llmcli")
    assert "--engine transformers" in e.value.hint


def test_the_engine_path_imports_no_transformers(tiny_model_dir):
    code = (
        "import sys\nfrom llmcli import cli\n"
        f"try:\n    cli.app(['probs', '-m', {str(tiny_model_dir)!r}, 'The cat', '--json'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in sys.modules if m == 'transformers' or m.startswith('transformers.')), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["table"]["rows"]


def test_views_on_transformers_modules_still_work_on_the_engine(tiny_model_dir):
    model = llmcli.load(str(tiny_model_dir))
    assert model.backend.engine == "llmcli"
    report = model.score("The cat sat on the mat.")
    ids = model.tokenizer("The cat sat on the mat.", add_special_tokens=False)["input_ids"]
    hf = model.backend.model  # loaded on first use, for the views that run its modules
    with torch.no_grad():
        loss = hf(torch.tensor([ids]), labels=torch.tensor([ids])).loss
    assert report.scores.totals.mean_nll == pytest.approx(float(loss), rel=1e-4)
    assert model.info().engine == "llmcli"


def test_the_engines_prepared_weights_are_made_once_and_mapped_after(tiny_model_dir, cache_dir):
    first = llmcli.load(str(tiny_model_dir))
    (prepared,) = (cache_dir / "engine").iterdir()
    stamp = prepared.stat().st_mtime_ns
    second = llmcli.load(str(tiny_model_dir))
    assert prepared.stat().st_mtime_ns == stamp and list((cache_dir / "engine").iterdir()) == [prepared]
    ids = first.prompt("The cat", mode="raw").ids
    torch.testing.assert_close(first.logits(ids), second.logits(ids), rtol=0, atol=0)
    hf = llmcli.load(str(tiny_model_dir), engine="transformers")
    torch.testing.assert_close(second.logits(ids), hf.logits(ids), rtol=0, atol=1e-5)


def test_max_memory_offloads_layers_to_disk_with_the_same_tokens(tiny_model_dir, cache_dir):
    """A model bigger than its budget runs from disk: the embeddings, norms and head stay in
    memory, the decoder layers that do not fit go to an offload folder, the tokens stay."""
    full = llmcli.load(str(tiny_model_dir), engine="transformers")
    small = llmcli.load(str(tiny_model_dir), max_memory="100KB")
    placement = small.backend.model.hf_device_map
    assert small.backend.engine == "transformers" and "disk" in placement.values()
    assert all(where == "cpu" for name, where in placement.items() if ".layers." not in f".{name}.")
    assert any((cache_dir / "offload").rglob("*"))
    prompt = full.prompt("The cat", mode="raw")
    assert small.generate(prompt, temperature=0, max_new_tokens=8).token_ids == full.generate(prompt, temperature=0, max_new_tokens=8).token_ids
    with pytest.raises(LlmcliError, match="not a size"):
        llmcli.load(str(tiny_model_dir), max_memory="lots")


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_weights_are_made_once_and_mapped_after(tiny_model_dir, cache_dir, mode):
    """The first quantized load writes the packed weights to the cache; later ones map them,
    with the same layers and the same logits as quantizing the float weights in memory; a file
    cut short is rebuilt, not trusted."""
    from llmcli.engine import load
    from llmcli.quantize import quantize_model

    first = llmcli.load(str(tiny_model_dir), quantize=mode)
    files = sorted((cache_dir / "engine").iterdir())
    assert len(files) == 2  # the float weights it was made from, and the quantized ones
    quantized = min(files, key=lambda f: f.stat().st_size)  # packed: smaller than the float32 file
    stamp = quantized.stat().st_mtime_ns
    second = llmcli.load(str(tiny_model_dir), quantize=mode)
    assert sorted((cache_dir / "engine").iterdir()) == files and quantized.stat().st_mtime_ns == stamp

    in_memory = load(tiny_model_dir)
    quantize_model(in_memory, mode)
    layers = lambda m: [(n, type(x).__name__, getattr(x, "quantized_parameters", None)) for n, x in m.named_modules()]  # noqa: E731
    assert layers(second.backend.engine_model) == layers(in_memory)
    assert {type(x).__name__ for _, x in second.backend.engine_model.named_modules()} >= {"Int8Linear"}
    # Mapped at 64-byte boundaries: torch's int8 kernel crashed on a weight 8 bytes off one,
    # given a prompt of 4 tokens or more (this one has more).
    assert all(t.data_ptr() % 64 == 0 for t in second.backend.engine_model.state_dict().values())
    ids = first.prompt("The cat sat on the mat", mode="raw").ids
    assert len(ids) >= 4
    expected = in_memory(torch.tensor([ids])).logits[0, -1]
    torch.testing.assert_close(second.logits(ids)[-1], expected, rtol=0, atol=0)
    torch.testing.assert_close(first.logits(ids)[-1], expected, rtol=0, atol=0)

    cut = quantized.with_name("cut")  # a new file put in its place: the loads above still map the old one
    cut.write_bytes(quantized.read_bytes()[:1000])
    cut.replace(quantized)
    third = llmcli.load(str(tiny_model_dir), quantize=mode)
    torch.testing.assert_close(third.logits(ids)[-1], expected, rtol=0, atol=0)
    assert quantized.stat().st_size > 1000


@pytest.mark.parametrize("mode", ["none", "int4"])
def test_the_summary_a_chat_opens_with_loads_nothing_more(tiny_model_dir, cache_dir, mode):
    """The chat's first lines (parameters, dtype, device) come from the engine's own model:
    transformers' copy, which `info()` walks, is not loaded for them; the count is the same."""
    ours = llmcli.load(str(tiny_model_dir), quantize=mode)
    summary = ours.summary()
    assert ours.backend._hf is None  # nothing else was loaded
    theirs = llmcli.load(str(tiny_model_dir), engine="transformers", quantize=mode).summary()
    expected = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    assert summary.parameters == theirs.parameters == expected
    assert (summary.dtype, summary.device, summary.quantize) == (theirs.dtype, theirs.device, theirs.quantize) == ("float32", "cpu", mode)
    assert summary.source == theirs.source == str(tiny_model_dir)
