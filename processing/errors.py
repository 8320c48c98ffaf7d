"""Errors that reach the user as one clear message, without a traceback."""


class XtalError(Exception):
    """A user-facing error: bad input, impossible parameters, nothing to process.

    ``str(error)`` is the whole message: the command line prints it on one line and
    exits 1; the web app shows it on the StageRun. ``error.field`` names the stage
    parameter at fault (a dataclass field name, or the key as the user wrote it when
    it is unknown), so a web form can show the message next to that field; None
    when no single parameter is to blame.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def __reduce__(self):  # keep ``field`` across process boundaries (pickle)
        return type(self), (str(self), self.field)


class SweepError(XtalError):
    """No sweep of the input could be processed: ``reasons[k]`` is sweep k's own reason
    (k = position in the stage's input), without the "sweep k (name): " the message
    puts in front of it, so a caller that names the sweeps itself can show it alone."""

    def __init__(self, message: str, reasons: dict[int, str]):
        super().__init__(message)
        self.reasons = dict(reasons)

    def __reduce__(self):
        return type(self), (str(self), self.reasons)
