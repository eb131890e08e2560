"""Packaged configs (the demo)."""
