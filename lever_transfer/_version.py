"""The package version, in a module of its own so that any module can read it without
importing the package root (whose lazy exports import the zoo)."""

__version__ = "0.1.0"
