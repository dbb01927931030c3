"""The one JSON conversion of the toolkit: results to JSON-ready data, and JSON text.

Every command that prints or writes JSON, and the ``summary()`` of the result classes, go
through :func:`json_ready`, so a number looks the same wherever it appears: non-finite floats
(NaN, infinities: a metric that is not defined) become ``null``, numpy scalars and arrays
become Python numbers and lists, tuples and dataclasses become lists and objects.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def json_ready(value: Any) -> Any:
    """``value`` as data that :func:`json.dumps` takes, without NaN or infinities.

    Non-finite floats become ``None``; other floats (numpy ones too) Python floats; numpy
    scalars their Python value; numpy arrays, lists and tuples lists; mappings dicts with
    ``str`` keys; dataclass instances dicts of their fields. Anything else is returned as it
    is. Containers are converted recursively; ``value`` itself is not changed.
    """
    if isinstance(value, float):  # numpy's float64 too
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return json_ready(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def to_json(data: Any) -> str:
    """``data`` (see :func:`json_ready`) as JSON indented by two spaces, no final newline."""
    return json.dumps(json_ready(data), indent=2, allow_nan=False)


def write_json(path: str | Path, data: Any) -> Path:
    """Write :func:`to_json` of ``data`` and a newline to ``path`` atomically (a temporary
    file renamed over it), creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_json(data) + "\n")
    os.replace(tmp, path)
    return path
