"""Errors a user can act on.

Every error raised for bad input is a :class:`CxrbioError`: the CLI prints its message
and its fix on one line each and exits with status 2, never a traceback. Messages name
the offending item (file, row, key) so the user can find it without a debugger.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CxrbioError", "DataError", "ImageReadError", "ImageTooLarge"]


class CxrbioError(Exception):
    """An error caused by the user's input or environment, with a suggested fix."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message} Fix: {self.fix}"


class ConfigError(CxrbioError):
    """A config file that is missing, malformed, or holds an unknown key or bad value."""


class DataError(CxrbioError):
    """Input data that cannot be used as given (layout, labels, paths, folds)."""


class ImageReadError(CxrbioError):
    """One image that cannot be decoded; scanning records it as a QC flag instead."""


class ImageTooLarge(ImageReadError):
    """An image with more pixels than the configured limit (``data.qc.max_pixels``); its pixels were never decoded."""
