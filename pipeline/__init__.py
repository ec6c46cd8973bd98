"""Keyword spotting on Speech Commands: audio -> features -> model -> decisions."""
