"""Keyword spotting on Speech Commands: audio -> features -> model -> decisions.

The Python API is :class:`Spotter` (:mod:`pipeline.runtime.spotter`); the commands are ``kws --help``.
"""

from __future__ import annotations

__all__ = ["Spotter"]


def __getattr__(name: str) -> type:
    """``pipeline.Spotter``, imported on first use: ``import pipeline.<module>`` does not load the runtime."""
    if name == "Spotter":
        from pipeline.runtime.spotter import Spotter

        return Spotter
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
