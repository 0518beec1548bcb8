"""Exception types shared by the whole package.

Every error a user can cause (bad input file, bad parameter) is a subclass of
:class:`CellextractError`; the command-line entry points print its message on one
line and exit with a non-zero status instead of showing a traceback.
"""


class CellextractError(Exception):
    """Base class for errors caused by the user's input or parameters."""


class InputError(CellextractError):
    """A movie file or series cannot be used (missing, corrupt, unsupported, mismatched)."""


class ParameterError(CellextractError, ValueError):
    """A parameter is unknown, has the wrong type, or is out of range."""


class NoComponentsError(CellextractError):
    """Source extraction found no components (reported, never a crash)."""
