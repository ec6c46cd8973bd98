"""The labels a model's outputs carry: spoken words, and the classes that are not words.

A model's labels are its checkpoint's (or export's) list, in output order; the two classes of the Speech Commands
tasks that name no word are ``SILENCE`` and ``UNKNOWN`` (any label that starts with ``_`` is such a class).

Example:
    >>> [label for label in ["_silence_", "_unknown_", "yes", "no"] if is_word(label)]
    ['yes', 'no']
"""

from __future__ import annotations

SILENCE = "_silence_"
UNKNOWN = "_unknown_"


def is_word(label: str) -> bool:
    """Whether a label is a spoken word: ``_silence_``, ``_unknown_`` and any other ``_`` label are classes."""
    return not label.startswith("_")
