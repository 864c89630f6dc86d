"""Errors a user can meet and fix. The CLI prints them without a traceback (exit status 2)."""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, a missing file, an impossible setting."""


class ConfigError(UserError, ValueError):
    """A configuration value is wrong. The message names the file, the dotted key and what is valid.

    Args:
        key: dotted key, e.g. ``train.global_batch``.
        message: what is wrong and what would be valid.
        source: the file (or ``--set``) the value came from, when known.
    """

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.message, self.source = key, message, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")
