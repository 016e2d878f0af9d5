"""Exceptions raised by the library; the CLI maps them to one-line messages and exit codes."""
from __future__ import annotations


class ToolkitError(Exception):
    """A failure the user can act on. ``exit_code`` 1 = failure, 2 = usage error."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ToolkitError):
    """Bad arguments: wrong values, missing paths, empty query."""

    exit_code = 2


class InputError(ToolkitError):
    """A file the user gave cannot be read or does not follow the expected format."""


class IndexError_(ToolkitError):
    """An index directory is missing, damaged or incompatible."""


class ModelError(ToolkitError):
    """An embedding model or a classifier bundle cannot be loaded or does not fit."""


class LockedError(ToolkitError):
    """Another process holds the write lock."""


def located(path: object, line: int | None = None) -> str:
    """Render ``path`` or ``path:line`` for error messages."""
    return f"{path}:{line}" if line is not None else str(path)
