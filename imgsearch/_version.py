"""The package version, at the bottom so that any layer may record it (the store does)."""

__version__ = "0.1.0"
