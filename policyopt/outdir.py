"""Output folders of ``simulate --out``, ``compare`` and ``capacity --region --out``: earlier
results are never replaced silently.

* ``compare`` without ``--out`` writes to ``policyopt-results/compare`` (a network:
  ``policyopt-results/compare-NAME``); when that folder already holds results, to the first
  free numbered one (``compare-2``, ``compare-3``, ...), and says so.
* An explicit ``--out`` that already holds results of the command is refused (exit code 2)
  unless ``--overwrite`` is given; then those files are replaced.
* An ``--out`` that is a file (or lies inside one) is refused, naming ``--out`` and the fix.

"Holds results" means the folder has one of the files the command writes; other files in
it are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from policyopt.errors import SpecError

SIMULATE_FILES: tuple[str, ...] = ("summary.json", "series.csv", "n_system.png", "jobs.png")
"""What ``simulate --out`` writes (one engine: the first three; a network: summary and jobs)."""

COMPARE_FILES: tuple[str, ...] = ("compare.csv", "compare.json", "n_system.png", "jobs.png")
"""What ``compare`` writes (``n_system.png`` for one engine, ``jobs.png`` for a network)."""

REGION_FILES: tuple[str, ...] = ("region.csv", "region.png")
"""What ``capacity --region --out DIR`` writes: the region's vertices and its figure."""


def not_a_file(folder: Path, flag: str) -> None:
    """Refuse a folder path that is a file, or lies inside a file."""
    for place in (folder, *folder.parents):
        if place.exists() and not place.is_dir():
            where = "is a file" if place == folder else f"is inside {place}, which is a file"
            raise SpecError(
                flag,
                f"{folder} {where}, not a folder",
                "give a folder path (it is created if missing), or move the file away",
            )


def results_in(folder: Path, names: Sequence[str]) -> list[str]:
    """The result files among ``names`` that ``folder`` holds."""
    return [n for n in names if (folder / n).exists()]


def explicit_out(
    folder: str | Path, names: Sequence[str], *, overwrite: bool, flag: str = "--out"
) -> Path:
    """A folder the user named: refused if it is a file, or if it holds results of an
    earlier run and ``overwrite`` is false; with ``overwrite``, those files are deleted."""
    out = Path(folder)
    not_a_file(out, flag)
    held = results_in(out, names)
    if held and not overwrite:
        raise SpecError(
            flag,
            f"{out} already holds results of an earlier run ({', '.join(held)})",
            "give --overwrite to replace them, or another --out",
        )
    for name in held:
        (out / name).unlink()
    return out


def fresh_default(default: str | Path, names: Sequence[str]) -> tuple[Path, bool]:
    """The default folder, or when it holds results the first free numbered one next to it
    (``compare-2``, ``compare-3``, ...); and whether it was numbered."""
    base = Path(default)
    not_a_file(base, "--out")
    if not results_in(base, names):
        return base, False
    n = 2
    while True:
        candidate = base.with_name(f"{base.name}-{n}")
        if not candidate.exists() or (candidate.is_dir() and not results_in(candidate, names)):
            return candidate, True
        n += 1


def trace_file(path: str | Path, flag: str = "--trace-batches") -> Path:
    """A CSV file to write: refused if it is a folder or lies inside a file (an existing
    file is replaced: the user named it)."""
    p = Path(path)
    if p.is_dir():
        raise SpecError(flag, f"{p} is a folder", "give the path of a .csv file to write")
    not_a_file(p.parent, flag)
    return p


def simulate_out(
    out: str | Path | None, trace_batches: str | Path | None, *, overwrite: bool
) -> Path | None:
    """Before a ``simulate`` run: its ``--out`` folder (``None`` if not given), refused if it
    is a file or holds an earlier run's results (unless ``overwrite``); a ``--trace-batches``
    that is a folder is refused."""
    if trace_batches:
        trace_file(trace_batches)
    if not out:
        return None
    return explicit_out(out, SIMULATE_FILES, overwrite=overwrite)


def compare_out(
    out: str | Path | None, default: str | Path, *, overwrite: bool
) -> tuple[Path, str | None]:
    """The folder of a ``compare``'s files and a note for the user (or ``None``): ``out``
    (refused if it holds an earlier run's results, unless ``overwrite``), else ``default``,
    or a fresh numbered folder next to it (``compare-2``, ...) when ``default`` holds
    results; the note says which and why."""
    if out is not None:
        return explicit_out(out, COMPARE_FILES, overwrite=overwrite), None
    folder, numbered = fresh_default(default, COMPARE_FILES)
    if not numbered:
        return folder, None
    return folder, (
        f"results go to {folder}: {default} holds an earlier run's (give --out DIR to choose "
        "the folder, with --overwrite to replace its results)"
    )
