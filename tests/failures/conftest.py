"""Fixtures of the failure matrix: broken models, the paths rows name, real processes.

`broken` is a folder of faulty models made once per session from the suite's tiny model (a
truncated GGUF, random bytes named .gguf, a GGUF of an architecture transformers cannot read,
an HF directory without weights, pickle-only weights, a model that ships code, hostile chat
templates...). `places` maps the `{names}` rows use to paths. `zygote` forks real llmcli
processes (tests/failures/processes.py); `child_env` is the environment a row's process gets:
the test's own cache and state directories, never the user's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.failures.processes import Zygote

# A model's own code, as `auto_map` points at it: importing it leaves a marker file.
REMOTE_CODE = '''
import os
from pathlib import Path

Path(os.environ["LLMCLI_TEST_MARKER"]).write_text("the model's own code ran")

from transformers import LlamaConfig, LlamaForCausalLM


class MarkerConfig(LlamaConfig):
    model_type = "marker_llama"


class MarkerForCausalLM(LlamaForCausalLM):
    config_class = MarkerConfig
'''

# Templates that try to leave jinja2's sandbox, the way server-side template injections do.
HOSTILE_TEMPLATES = {
    "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ cycler.__init__.__globals__.os.system('touch ' ~ messages[0]['content']) }}",
    "self": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "format": "{{ '{0.__class__.__mro__}'.format('') }}",
}


def _copy_model(source: Path, target: Path, *, skip: tuple[str, ...] = ()) -> Path:
    target.mkdir(parents=True)
    for f in source.iterdir():
        if f.name not in skip:
            shutil.copy(f, target / f.name)
    return target


def _unknown_architecture_gguf(path: Path) -> Path:
    """A well-formed GGUF file of an architecture transformers' GGUF loader does not read."""
    path.parent.mkdir(parents=True)
    writer = gguf.GGUFWriter(str(path), "rwkv6")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_embedding_length(4)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def broken(tmp_path_factory, tiny_model_dir, tiny_gguf_master) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken-models")
    made: dict[str, Path] = {}
    data = tiny_gguf_master.read_bytes()
    for name, content in {
        "truncated_gguf": data[: len(data) // 3],
        "short_gguf": data[:-1000],  # the header is whole, the last tensor is cut
        "random_gguf": np.random.default_rng(0).bytes(5000),
        "empty_gguf": b"",
        "magic_only_gguf": b"GGUF" + bytes(range(100)),
    }.items():
        (root / name).mkdir()
        (root / name / "model.gguf").write_bytes(content)
        made[name] = root / name / "model.gguf"
    made["arch_gguf"] = _unknown_architecture_gguf(root / "arch" / "rwkv.gguf")
    made["no_weights"] = _copy_model(tiny_model_dir, root / "no-weights", skip=("model.safetensors",))
    made["unknown_type"] = _copy_model(tiny_model_dir, root / "unknown-type")
    config = json.loads((made["unknown_type"] / "config.json").read_text())
    (made["unknown_type"] / "config.json").write_text(json.dumps({**config, "model_type": "florbleformer"}))
    made["bad_config"] = _copy_model(tiny_model_dir, root / "bad-config")
    (made["bad_config"] / "config.json").write_text("{not json")
    made["short_weights"] = _copy_model(tiny_model_dir, root / "short-weights")
    weights = made["short_weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    made["not_a_model_file"] = root / "notes.txt"
    made["not_a_model_file"].write_text("hello")

    # Weights only as a pickle checkpoint; and the same with safetensors beside it.
    from safetensors.torch import load_file
    import torch

    made["pickle_only"] = _copy_model(tiny_model_dir, root / "pickle-only", skip=("model.safetensors",))
    torch.save(load_file(tiny_model_dir / "model.safetensors"), made["pickle_only"] / "pytorch_model.bin")
    made["pickle_and_safetensors"] = _copy_model(tiny_model_dir, root / "pickle-and-safetensors")
    (made["pickle_and_safetensors"] / "pytorch_model.bin").write_bytes(b"not even a pickle: must never be read")

    # A model that ships its own code (auto_map), which must not run without --trust-remote-code.
    made["remote_code"] = _copy_model(tiny_model_dir, root / "remote-code")
    config = json.loads((made["remote_code"] / "config.json").read_text())
    config.update(
        model_type="marker_llama",
        architectures=["MarkerForCausalLM"],
        auto_map={"AutoConfig": "marker.MarkerConfig", "AutoModelForCausalLM": "marker.MarkerForCausalLM"},
    )
    (made["remote_code"] / "config.json").write_text(json.dumps(config))
    (made["remote_code"] / "marker.py").write_text(REMOTE_CODE)

    for name, template in HOSTILE_TEMPLATES.items():
        made[f"template_{name}"] = _copy_model(tiny_model_dir, root / f"template-{name}")
        (made[f"template_{name}"] / "chat_template.jinja").write_text(template)
    return made


@pytest.fixture
def places(tmp_path, tiny_model_dir, tiny_base_dir, tiny_gguf, broken) -> dict[str, Path]:
    """The `{names}` rows use: the tiny models, the broken ones, files that do not exist."""
    (tmp_path / "empty-dir").mkdir()
    return {
        "empty_dir": tmp_path / "empty-dir",
        "tiny": tiny_model_dir,
        "base": tiny_base_dir,
        "gguf": tiny_gguf,
        "missing": tmp_path / "no-such-model.gguf",
        "missing_dir": tmp_path / "no-such-dir" / "model",
        "tmp": tmp_path,
        **broken,
    }


@pytest.fixture(autouse=True)
def one_click_command(monkeypatch):
    """The `cli` fixture's runner builds llmcli's click command from the Typer app on every
    call (about 75 ms: a third of a row's time here); the command is the same each time."""
    import typer.testing

    built = {}

    def command(app):
        if id(app) not in built:
            built[id(app)] = typer.main.get_command(app)
        return built[id(app)]

    monkeypatch.setattr(typer.testing, "_get_command", command)


@pytest.fixture(scope="session")
def zygote(tmp_path_factory, tiny_model_dir, tiny_base_dir, tiny_gguf_master):
    workdir = tmp_path_factory.mktemp("zygote")
    gguf = workdir / "warm-up" / "tiny.gguf"
    gguf.parent.mkdir()
    shutil.copy(tiny_gguf_master, gguf)
    tiny, base = str(tiny_model_dir), str(tiny_base_dir)
    warm_up = [
        ["generate", "hi", "-n", "2", "-m", tiny],
        ["generate", "hi", "-n", "2", "-m", str(gguf)],  # a conversion
        ["tokenize", "hi", "-m", tiny],
        ["probs", "hi", "--steps", "2", "-m", tiny],
        ["score", "hi there", "-m", tiny],
        ["lens", "hi", "-m", tiny],
        ["attention", "hi", "-m", tiny],
        ["neighbors", "the", "-m", tiny],
        ["compare", "hi", "-n", "2", "-m", tiny, "-m", base],
        ["info", "-m", tiny],
        ["chat", "-n", "2", "-m", tiny],
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLMCLI_", "PYTEST_")) and k not in ("COLUMNS", "LINES", "FORCE_COLOR")
    }
    env.update(
        HF_HUB_OFFLINE="1",
        HF_MODULES_CACHE=str(workdir / "hf-modules"),  # where transformers copies a model's own code
        TOKENIZERS_PARALLELISM="false",
    )
    z = Zygote(workdir, env, warm_up)
    yield z
    z.stop()


@pytest.fixture
def child_env(tmp_path, cache_dir) -> dict[str, str]:
    """The environment of a row's process: this test's cache, state and home directories."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "LLMCLI_CACHE_DIR": str(cache_dir),
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "LLMCLI_TEST_MARKER": str(tmp_path / "remote-code-ran"),
    }
