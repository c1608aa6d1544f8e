"""The small error hierarchy that ``main`` maps to exit codes.

Anything that is not a CollectorError is a bug and is shown with its traceback.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error the user can act on."""

    exit_code = 1


class ConfigError(CollectorError):
    """The configuration is wrong: a typo, a wrong type, an unknown component, a bad graph."""

    exit_code = 2


class PluginError(ConfigError):
    """A component plugin failed to load or is malformed."""


class EnvironmentProblem(CollectorError):
    """The machine lacks something: root, tracefs, kernel headers, bcc, a kernel feature."""

    exit_code = 3


class RuntimeFailure(CollectorError):
    """A component failed while running."""

    exit_code = 4
