"""binderq: launch reproducible Jupyter notebook servers on demand."""

__version__ = "0.1.0"
