"""The error type of bad user input: its message is one sentence that the commands print as it is."""


class KWSError(ValueError):
    """A bad input (file, folder, flag or checkpoint) explained in one sentence."""
