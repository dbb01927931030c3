"""Reading the files a user names (configs, profiles, traces, length columns) with one-line errors.

:func:`read_text` is the one way the model reads a user's file: a missing path says
``no such file``, a directory says ``is a directory``, and a file that is not text (not
UTF-8, or holding NUL bytes: an image, an archive, a model) says so, each as a
:class:`~policyopt.errors.SpecError` naming the file, never a traceback.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from policyopt.errors import SpecError


def check_file(path: str | Path, fix: str) -> Path:
    """``path`` as a :class:`Path` if it is a file; else a :class:`SpecError` saying why not
    (``no such file`` or ``is a directory``) with ``fix``."""
    p = Path(path)
    if p.is_dir():
        raise SpecError(str(path), "is a directory, not a file", fix)
    if not p.is_file():
        raise SpecError(str(path), "no such file", fix)
    return p


def read_text(path: str | Path, what: str, fix: str) -> str:
    """The text of the file ``path`` (UTF-8, a leading byte-order mark dropped).

    ``what`` names the kind of file expected (``a YAML or TOML config``), ``fix`` what to do
    when there is no such file. Raises :class:`SpecError` naming the file.
    """
    p = check_file(path, fix)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = "\x00"
    if "\x00" in text:
        raise SpecError(
            str(path), "is not a text file (a binary file?)", f"give the path of {what}"
        )
    return text


def csv_reader(path: str | Path, text: str) -> csv.DictReader[str]:
    """A ``csv.DictReader`` over the CSV ``text`` of ``path``, its header read
    (``fieldnames``); :func:`rows_of` gives its data rows."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        _ = reader.fieldnames
    except csv.Error as err:
        raise SpecError(
            f"{path} line 1", f"not a valid CSV header: {err}", "fix the header"
        ) from None
    return reader


def rows_of(path: str | Path, reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """The data rows of ``reader`` with their line numbers; a malformed line raises
    :class:`SpecError` naming it."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise SpecError(
                f"{path} line {reader.line_num}", f"not valid CSV: {err}", "fix the line"
            ) from None
        yield reader.line_num, row


def require_columns(
    path: str | Path, reader: csv.DictReader[str], need: list[str], fix: str
) -> list[str]:
    """The CSV's header columns; :class:`SpecError` at line 1 naming the ``need`` columns it
    lacks, with ``fix``."""
    cols = list(reader.fieldnames or [])
    missing = [c for c in need if c not in cols]
    if missing:
        raise SpecError(
            f"{path} line 1",
            f"missing column(s) {', '.join(missing)} (found {', '.join(cols) or 'none'})",
            fix,
        )
    return cols


@lru_cache(maxsize=64)
def _read_column_cached(
    path: str, mtime: float, column: str, accept: Callable[[float], bool], expected: str
) -> tuple[float, ...]:
    out: list[float] = []
    text = read_text(path, "a CSV file", "give the path of an existing CSV")
    reader = csv_reader(path, text)
    if column not in (reader.fieldnames or []):
        raise SpecError(
            f"{path} line 1",
            f"no column {column!r} (found {', '.join(reader.fieldnames or []) or 'none'})",
            "name an existing column",
        )
    for lineno, row in rows_of(path, reader):
        raw = row.get(column)
        try:
            val = float(raw) if raw is not None else math.nan
        except ValueError:
            val = math.nan
        if not math.isfinite(val) or not accept(val):
            raise SpecError(
                f"{path} line {lineno}",
                f"{column}={raw!r} is not {expected}",
                "fix or remove the row",
            )
        out.append(val)
    if not out:
        raise SpecError(path, "the CSV has no data rows", "add at least one row")
    return tuple(out)


def read_column(
    path: str | Path, column: str, accept: Callable[[float], bool], expected: str
) -> tuple[float, ...]:
    """The numbers of one CSV column (cached while the file is unchanged).

    ``accept`` (a module-level function, so that it can key the cache) says whether a finite
    value is valid; ``expected`` describes a valid value for the error (``a whole number of
    tokens >= 1``). A missing column, a bad row (with its line number) or a file without data
    rows raises :class:`SpecError`.
    """
    p = check_file(path, "give the path of an existing CSV")
    return _read_column_cached(str(p), p.stat().st_mtime, column, accept, expected)


def check_sample_source(
    values: Sequence[float] | None, path: str | None, column: str | None, what: str
) -> None:
    """An empirical distribution's observations come from exactly one source: ``values``
    inline, or the ``column`` of a CSV file ``path``; inline, at least one. ``what`` names the
    observations in the messages (``the lengths``, ``service times``)."""
    if (values is None) == (path is None):
        raise SpecError(
            "values" if values is not None else "path",
            "give exactly one of values (a list) or path (a CSV file)",
            "remove one" if values is not None else "add one",
        )
    if path is not None and not column:
        raise SpecError("column", f"with path, name the CSV column holding {what}", "add column")
    if values is not None and not values:
        raise SpecError("values", "empty", f"list at least one of {what}")
