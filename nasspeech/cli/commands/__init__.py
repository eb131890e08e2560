"""One module per ``nasspeech`` sub-command (discovered automatically)."""
