"""Checks of single values that the API, the command line and the config all make, in one
place.  Pure: it imports nothing of jitprop."""

import math
import numbers


def whole_number(value):
    """Whether value has a whole-number type (int, a NumPy integer): 3, not 3.0 (which range()
    and array shapes refuse) nor True."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def checked_lr(lr):
    """lr as a float, or a ValueError unless it is a finite real number > 0."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
        raise ValueError(f"lr: expected a finite number > 0, found {lr!r}")
    return float(lr)
