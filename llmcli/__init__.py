"""llmcli: run a language model on your own machine, talk to it, and look inside it."""

__version__ = "0.1.0"
