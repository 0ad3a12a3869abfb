"""One module per subcommand: options -> load -> compute -> render.

Each module exposes `register(app)` and imports torch/transformers only inside the
command body, so building the CLI (and `--help`) stays instant.
"""
