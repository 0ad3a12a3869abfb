"""llmcli: run a language model on your own machine, talk to it, and look inside it.

    import llmcli
    model = llmcli.load("smollm2")
    print(model.generate("What is the capital of France?", temperature=0).text)

The names below are imported on first use, so `import llmcli` (and `llmcli --help`)
stays light: torch and transformers load only when a model does.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load": "llmcli.api",
    "load_tokenizer": "llmcli.api",
    "Model": "llmcli.api",
    "ModelPool": "llmcli.api",
    "Response": "llmcli.api",
    "Tokenizer": "llmcli.api",
    "Message": "llmcli.prompting",
    "Prompt": "llmcli.prompting",
    "SamplingSettings": "llmcli.sampling",
    "LlmcliError": "llmcli.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llmcli' has no attribute {name!r}")
