"""The package version (a leaf module, so that every layer can record it without importing the package)."""

__version__ = "8.1.0"
