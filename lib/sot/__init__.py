"""Shape of Thought reproduction: all pipeline logic; the notebooks only call into this package."""
__version__ = "0.1.0"
