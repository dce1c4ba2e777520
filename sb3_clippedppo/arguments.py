"""Argument checks that raise a clear ``TypeError`` or ``ValueError`` naming the argument and the accepted range."""

import numbers
from typing import Any

import numpy as np


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (a bool is not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> None:
    """Check that ``value`` is an int (not a bool) and at least ``minimum``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_real(name: str, value: Any, low: float, high: float = np.inf, low_open: bool = False) -> None:
    """Check ``low <= value <= high`` (``low < value`` when ``low_open``)."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    too_low = value <= low if low_open else value < low
    if too_low or value > high or np.isnan(value):
        interval = f"{'(' if low_open else '['}{low}, {high}{']' if np.isfinite(high) else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")


def check_schedule(name: str, value: Any, allow_none: bool = False) -> None:
    """A positive number, or a schedule (callable of the progress remaining) whose initial value is positive."""
    if value is None and allow_none:
        return
    if callable(value):
        initial = value(1.0)
        if not is_number(initial) or not initial > 0:
            raise ValueError(f"{name} schedule must return a positive number at progress 1, got {initial!r}")
        return
    if not is_number(value):
        expected = "a positive number, a schedule" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not value > 0:
        raise ValueError(f"{name} must be > 0{' (use None to disable it)' if allow_none else ''}, got {value}")


def check_coefficient(name: str, value: Any) -> None:
    """A number >= 0, or a schedule (callable of the progress remaining) whose initial value is a number >= 0."""
    initial = value(1.0) if callable(value) else value
    if not is_number(initial):
        kind = type(initial).__name__
        raise TypeError(f"{name} must be a number >= 0 or a schedule returning one, got {initial!r} ({kind})")
    if not initial >= 0:
        raise ValueError(f"{name} must be in [0.0, inf){' (at progress 1)' if callable(value) else ''}, got {initial}")
