"""Pure computations on a loaded model or tokenizer, returning plain data (no Rich, no Typer)."""
