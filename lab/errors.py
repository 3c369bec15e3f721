"""Exceptions with one-line messages meant for users."""

from __future__ import annotations


class LabError(Exception):
    """Base class: the message is a complete one-line explanation."""

    exit_code = 1


class TopologyError(LabError):
    """A topology (model or file) is invalid. Carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid topology: " + "; ".join(self.problems))


class PreflightError(LabError):
    """The machine cannot run the lab (not root, no ipvsadm, no IPVS...)."""

    exit_code = 3


class UsageError(LabError):
    """A command was given something that does not exist or does not fit."""

    exit_code = 2


class UnsafePathError(UsageError):
    """A directory root is to write into is not root's own: someone else owns it, others
    may write into it, or it is a link or not a directory."""
