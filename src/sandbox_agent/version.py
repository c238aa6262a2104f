"""The package's version, importable from every layer (the root package imports the SDK)."""

__version__ = "0.1.0"
