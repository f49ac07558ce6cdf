"""Value checks shared by the config dataclasses (``grounding.model.config``, ``grounding.training.config``).

Each check raises :class:`~grounding.errors.ConfigError` naming the dotted key, the value seen and what was
expected (``train.lr must be in (0.0, 10.0], got 0``). This module imports only ``grounding.errors``, so any
part of the package may use it without an import cycle.

    check_int("video_graph.knn_k", 0, 1)            # ConfigError: video_graph.knn_k must be >= 1, got 0
    check_choice("train.schedule", "cosin", SCHEDULES)  # ... got 'cosin' (did you mean 'cosine'?)
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

from grounding.errors import ConfigError


def closest(name: str, candidates: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The candidate most like ``name`` (:func:`difflib.get_close_matches`), or None when none is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def check_int(key: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    """An integer (not a bool) in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{key} must be {bound}, got {value}")


def check_number(key: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False) -> float:
    """A finite int or float (not a bool) in ``[low, high]`` (``(low, high]`` with ``low_open``); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bound = f"{'(' if low_open else '['}{low}, {high}]"
        raise ConfigError(f"{key} must be in {bound}, got {value}")
    return float(value)


def check_bool(key: str, value: Any) -> None:
    """``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    """One of ``choices``; the message suggests the closest choice."""
    if value not in choices:
        close = closest(str(value), choices)
        hint = f" (did you mean '{close}'?)" if close else ""
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}{hint}")


def check_optional_str(key: str, value: Any) -> None:
    """None, or a string that is not blank."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{key} must be a non-empty string or null, got {value!r}")
