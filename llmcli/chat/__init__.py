"""The chat in the terminal: session state, slash commands, reader, streaming, the loop."""
