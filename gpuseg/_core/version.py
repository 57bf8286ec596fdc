"""The version of gpuseg, for every layer to name (the package root imports everything else)."""

__version__ = "0.1.0"
