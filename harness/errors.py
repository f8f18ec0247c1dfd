"""The base of every user-facing error: bad input, config or data. The CLI prints these as
one clear line (they name the file and what is wrong) instead of a traceback."""


class HarnessError(ValueError):
    """Bad input: the message names the file (or flag) and the problem."""
