"""One exception type for everything a user can cause (bad file, unknown name, bad option).

The CLI prints such errors as one line and exits 1; anything else is a bug and is reported as such.
"""


import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """Control characters (newlines, terminal escapes) from file names or headers shown as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class VqtoolError(Exception):
    """A problem with the user's input, reported as one line: ``SOURCE: cause``."""

    def __init__(self, message: str, source: str | None = None):
        super().__init__(message)
        self.source = source

    def __str__(self) -> str:
        message = super().__str__()
        return one_line(f"{self.source}: {message}" if self.source else message)


class StdoutClosed(Exception):
    """The reader of our stdout went away (`vqtool ... | head`): stop quietly, exit 0.
    Not an OSError, so that the CLI framework does not turn it into a silent exit 1."""
