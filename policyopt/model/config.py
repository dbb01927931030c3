"""Load specs from YAML or TOML files and turn validation failures into one-line errors.

:func:`load_scenario` reads a file (``.yaml``, ``.yml`` or ``.toml``) and returns a validated
:class:`~policyopt.model.scenario.Scenario`; :func:`build` validates a dict or keyword
arguments against any spec class. Both raise :class:`~policyopt.errors.SpecError` whose text
names the offending field (``workload.prompt.mean``) and the fix.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from policyopt.errors import SpecError
from policyopt.model.files import read_text
from policyopt.model.scenario import Scenario
from policyopt.model.validation import spec_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

M = TypeVar("M", bound=BaseModel)


def build(cls: type[M], data: Any = None, prefix: str = "", **kwargs: Any) -> M:
    """Validate ``data`` (a dict) or keyword arguments as ``cls``, raising :class:`SpecError`."""
    payload = dict(data or {}, **kwargs)
    try:
        return cls.model_validate(payload)
    except ValidationError as err:
        raise spec_error(err, prefix) from None
    except SpecError as err:
        field = ".".join(x for x in (prefix, err.field) if x)
        raise SpecError(field, err.problem, err.fix) from None


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML or TOML file."""
    p = Path(path)
    text = read_text(p, "a .yaml or .toml config", "give the path of a .yaml or .toml config")
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise SpecError(str(path), f"unknown config type {p.suffix!r}", "use .yaml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = str(err).splitlines()[0]
        raise SpecError(
            f"{path}{line}", f"not valid {p.suffix[1:]}: {problem}", "fix the syntax"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(str(path), "the top level is not a mapping", "write key: value pairs")
    return _resolve_paths(data, p.parent)


def _resolve_paths(data: Any, folder: Path) -> Any:
    """Relative ``path`` values (traces, CSV columns) are read from the config file's folder."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key == "path" and isinstance(value, str) and not Path(value).is_absolute():
                value = str(folder / value)
            out[key] = _resolve_paths(value, folder)
        return out
    if isinstance(data, list):
        return [_resolve_paths(v, folder) for v in data]
    return data


def load_scenario(path: str | Path, **overrides: Any) -> Scenario:
    """A validated :class:`Scenario` from a config file; ``overrides`` replace top-level keys."""
    data = read_mapping(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return build(Scenario, data)
