"""Built-in ``seq`` candidate ops (placeholder: being written)."""
