"""Keyword spotting on Speech Commands: audio -> features -> model -> decisions.

The Python API is :class:`Spotter` (:mod:`pipeline.spotter`); the commands are ``kws --help``.
"""

from pipeline.spotter import Spotter

__all__ = ["Spotter"]
