"""The error types of bad user input: each message is one sentence that the commands print as it is."""


class KWSError(ValueError):
    """A bad input (file, folder, flag or checkpoint) explained in one sentence."""


class AudioError(KWSError):
    """An audio file that cannot be used; the message names the file and the reason."""


class DataError(KWSError):
    """A dataset problem explained in one sentence."""


TRAINING_STACK = "pip install 'kws-pipeline[train]'"  # what training, export and .ckpt files need beyond the runtime


def first_line(err: Exception) -> str:
    """The first line of an exception's message (or its type name): short enough for a one-line error."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
