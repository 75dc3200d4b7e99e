"""The one JSON cleaner of the project: metrics as plain Python that strict JSON can hold.

:func:`clean` turns numpy scalars and arrays into Python numbers and lists, every non-finite
float (NaN, +inf, -inf alike) and pandas' missing values into None, and mapping keys into
strings, recursively. It is the only place where a non-finite number becomes None: the analysis
calls it by this name wherever it hands out numbers (no aliases), and the one JSON writer,
``conceptspace.io.write_json``, converts nothing and refuses NaN and infinities, so whatever
the analysis writes has passed through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def clean(x: Any) -> Any:
    """JSON-ready: numpy -> python, NaN/inf/NA -> None, keys -> str, recursively through
    mappings, lists, tuples and arrays."""
    if isinstance(x, Mapping):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is pd.NA or x is pd.NaT:
        return None
    return x
