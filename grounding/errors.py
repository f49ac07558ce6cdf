"""Errors raised by the library. Only ``grounding.cli`` catches them and turns them into one line on stderr.

Every message names the input (file:line, video id, qid, flag), the value seen versus the value expected,
and what to do about it.
"""

from __future__ import annotations


class GroundingError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(GroundingError, ValueError):
    """Bad user input: a malformed file, an unknown video id, NaN features, an empty query, ..."""


class ConfigError(GroundingError, ValueError):
    """A configuration value that cannot work (unknown key, out-of-range value, mismatched checkpoint)."""


class MissingDependencyError(GroundingError, ImportError):
    """An optional package is needed for this feature; the message names the pip extra to install."""


def require_package(module: str, feature: str, extra: str) -> None:
    """Raise :class:`MissingDependencyError` unless ``module`` can be imported.

    Uses ``importlib.util.find_spec`` so the module is not imported just to check for it.
    """
    from importlib.util import find_spec

    if find_spec(module) is None:
        raise MissingDependencyError(
            f"{feature} needs the '{module}' package; install it with: pip install \"grounding[{extra}]\""
        )
