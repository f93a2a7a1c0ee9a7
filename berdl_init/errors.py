"""The failures that decide berdl-init's exit status (see cli.py for the mapping)."""

from __future__ import annotations


class SettingsError(Exception):
    """Invalid settings, usage or templates: nothing was changed (exit status 2)."""


class HomeError(Exception):
    """The home itself cannot be used: missing and not creatable, a symlink, not a folder,
    not writable, another user's, or locked by another run for too long (exit status 3)."""


class UnsafePathError(OSError):
    """A managed path, or a folder on the way to it, is a symlink or not what it should be."""
