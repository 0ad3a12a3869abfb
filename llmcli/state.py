"""Process-wide switches set by the root command (`--verbose`)."""

verbose = False
