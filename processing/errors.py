"""Errors that reach the user as one clear message, without a traceback."""


class XtalError(Exception):
    """A user-facing error: bad input, impossible parameters, nothing to process.

    ``str(error)`` is the whole message: the command line prints it on one line and
    exits 1; the web app shows it on the StageRun.
    """
