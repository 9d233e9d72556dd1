"""The ``raking rake`` subcommand: rake the rows of a CSV file or of Parquet files to targets.

::

    raking rake data.csv --target COLUMN=targets.csv [--target ...] [--weights COL]
                [--steps K] [--tol TOL] [--max-iter N] [--bounds LO HI] [--total T]
                [--na error|drop|level] [--unknown error|zero] --out weights.csv
    raking rake data/*.parquet --target ... --out weights.parquet

DATA is a CSV file whose first line names the columns, or one or more Parquet files (names
ending in ``.parquet`` or ``.pq``; a pattern such as ``'data/*.parquet'`` that the shell did not
expand is expanded here, in sorted order; a folder stands for the Parquet files in it, sorted).
Each target file is a CSV whose first line is ``level,target`` and which has one row per level
of COLUMN: the level, and its target (a count or a share). The output (``--out``; Parquet when
its name ends in ``.parquet`` or ``.pq``, CSV otherwise) has two columns: ``row``, the 0-based
row number in DATA (for several Parquet files, counted across the files in the order given or
sorted), to join the weights back, and ``weight`` (empty for rows dropped by ``--na drop``). The
summary of :meth:`raking.survey.results.RakeResult.summary` is printed on stdout.

Parquet DATA is streamed with Polars (``scan_parquet``, then ``sink_parquet``): only the files'
schemas are read up front, :func:`raking.rake` codes the columns and sums the cells of the crossed
levels as it scans the rows, rakes the cells, and the weights are written as the rows are read a
second time, so memory grows with the number of cells, not of rows. Polars rather than Dask: one
process and no cluster to start for a command, its streaming engine bounds the memory, and
``sink_parquet`` writes one file in row order. (A cluster: use :func:`raking.rake` on a Dask
DataFrame.) The files must hold the same columns with the same types; levels of an integer column
are compared as integers, never cast to the file's narrower type.

Everything is checked before raking, and every message names the flag, the file and the column
it is about:

- the levels of a target file are read as text and converted to the type of COLUMN in DATA only
  when the conversion is exact: a level ``1.9`` for an integer column, or ``a`` for a numeric
  one, is an error, never cast (to ``1``) or compared as text;
- a target file without the header ``level,target`` is an error: its columns are never guessed
  by position, since a file without a header line would silently lose its first level;
- a COLUMN given twice with ``--target``, a duplicated level, a non-numeric target or
  ``--weights`` value, and an empty or header-only file are errors;
- ``--out`` must name a file in an existing folder we can write to (checked before the run) and
  may not be one of the input files.

Exit status: 0 on success (or after ``--steps K``), 1 when raking does not converge or an input
file is wrong, 2 for a wrong flag (``--target``, ``--out``).
"""

from __future__ import annotations

import argparse
import glob
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "add_rake_parser",
    "as_flags",
    "finite_float",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "run_rake",
]

_SHOWN = 5  # offending values listed in a message


def add_rake_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``rake`` subcommand to the subparsers ``sub`` of the ``raking`` command."""
    rake = sub.add_parser(
        "rake",
        help="rake the rows of a CSV file or of Parquet files to target margins and write the "
        "weights",
        description="Rake the rows of DATA (a CSV file with a header line, or Parquet files, "
        "streamed) so that their weighted level counts match the targets, write the weights "
        "(columns row, weight) to OUT and print the summary.",
    )
    rake.add_argument(
        "data",
        type=Path,
        nargs="+",
        metavar="DATA",
        help="one CSV file, or Parquet files (.parquet; several, a quoted glob such as "
        "'data/*.parquet', or a folder of them), one row per unit",
    )
    rake.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="COLUMN=FILE",
        help="target margin of COLUMN: a CSV file with the header level,target and one row per "
        "level (repeat per variable; each COLUMN once)",
    )
    rake.add_argument(
        "--weights", metavar="COL", help="numeric column of design weights (default: all 1)"
    )
    rake.add_argument(
        "--steps",
        type=nonnegative_int,
        metavar="K",
        help="exactly K single-variable adjustments (default: iterate to --tol)",
    )
    rake.add_argument(
        "--tol", type=positive_float, default=1e-10, help="max margin error (shares; 1e-10)"
    )
    rake.add_argument(
        "--max-iter",
        type=positive_int,
        default=1000,
        metavar="N",
        help="max sweeps over the variables (default: 1000)",
    )
    rake.add_argument(
        "--bounds", type=finite_float, nargs=2, metavar=("LO", "HI"), help="bounds on w_i / d_i"
    )
    rake.add_argument(
        "--total",
        type=positive_float,
        metavar="T",
        help="population total of the weights (default: the targets' total if they are counts)",
    )
    rake.add_argument(
        "--na",
        choices=("error", "drop", "level"),
        default="error",
        help="missing values in a raked column: stop with an error (default); drop their rows "
        "(weight empty in OUT); or make missing a level of its own, whose target is the row "
        "with an empty level in the target file",
    )
    rake.add_argument(
        "--unknown",
        choices=("error", "zero"),
        default="error",
        help="levels of DATA that a target file lacks: stop with an error (default), or give "
        "their rows weight 0",
    )
    rake.add_argument(
        "--out",
        type=Path,
        required=True,
        help="file for the weights, columns row and weight: Parquet if it ends in .parquet or "
        ".pq, else CSV",
    )
    rake.set_defaults(parser=rake)
    return rake


def run_rake(args: argparse.Namespace) -> int:
    """Run ``raking rake``; return the exit status (1 with a one-line message on bad input).

    Warnings (few rows in a level, weight-0 rows, no convergence) are printed as one line each
    on stderr, like the errors.
    """
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            result = _rake(args)
        except SystemExit as exc:  # parser.error on a wrong flag: a usage error
            return exc.code if isinstance(exc.code, int) else 2
        except (ValueError, OSError) as exc:
            print(f"raking rake: error: {as_flags(str(exc))}", file=sys.stderr)
            return 1
    print(result.summary())
    print(f"\nwrote {args.out}")
    return 0 if result.converged or args.steps is not None else 1


def _rake(args: argparse.Namespace) -> Any:
    """Check the flags and files, rake, write ``--out``; return the ``RakeResult``."""
    from raking.survey.frontend import rake

    files = _data_files(args)
    _check_out(args, files)
    if _is_parquet(files[0]):
        return _rake_parquet(args, files)
    args.data = files[0]
    data = _read_csv(args.data, "DATA")
    targets = _targets(args, data)
    if args.weights is not None:
        _numeric_weights(data, args.weights, args.data)
    result = rake(data, targets, **_keywords(args))
    weights = result.weights.rename("weight").rename_axis("row").reset_index()
    if _is_parquet(args.out):
        weights.to_parquet(args.out, index=False)
    else:
        weights.to_csv(args.out, index=False)
    return result


def _targets(args: argparse.Namespace, data: Any) -> dict[str, Any]:
    """The ``--target`` files as ``{column: Series of targets by level}`` (see _read_target)."""
    targets: dict[str, Any] = {}
    files: dict[str, str] = {}
    for spec in args.target:
        column, series = _read_target(spec, data, args, files)
        targets[column] = series
    return targets


def _keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`raking.rake` that the flags set."""
    return {
        "weights": args.weights,
        "steps": args.steps,
        "tol": args.tol,
        "max_iter": args.max_iter,
        "bounds": None if args.bounds is None else tuple(args.bounds),
        "total": args.total,
        "na": args.na,
        "unknown": args.unknown,
    }


# ------------------------------------------------------------------------------------------------
# Parquet: the rows are streamed by Polars, never loaded together
# ------------------------------------------------------------------------------------------------

PARQUET_SUFFIXES = (".parquet", ".pq")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def _data_files(args: argparse.Namespace) -> list[Path]:
    """The DATA files in order: one CSV file, or Parquet files (globs and folders expanded).

    A pattern the shell left unexpanded (quoted, or matching nothing) is expanded here, in sorted
    order; a folder stands for its ``*.parquet`` / ``*.pq`` files, sorted. Raises ``ValueError``
    for a pattern or folder with no file, a missing Parquet file or one given twice; a usage
    error (status 2) for several CSV files or CSV mixed with Parquet.
    """
    files: list[Path] = []
    for path in args.data:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _is_parquet(p))
            if not found:
                raise ValueError(f"DATA folder {path} holds no Parquet file (*.parquet, *.pq)")
            files += found
        elif not path.exists() and any(c in str(path) for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(path)))
            if not found:
                raise ValueError(f"DATA pattern {path} matches no file")
            files += found
        else:
            files.append(path)
    parquet = [f for f in files if _is_parquet(f)]
    if len(files) > 1 and len(parquet) < len(files):
        args.parser.error(
            f"DATA must be one CSV file, or Parquet files (*.parquet, *.pq); got {len(files)} "
            f"files: {_listed([str(f) for f in files], str)}"
        )
    for f in parquet:
        if not f.is_file():
            raise ValueError(f"cannot read DATA file {f}: no such file")
    seen: set[Path] = set()
    for f in parquet:
        if f.resolve() in seen:
            raise ValueError(f"DATA file {f} is given twice; its rows would be raked twice")
        seen.add(f.resolve())
    return files


def _polars() -> Any:
    """The ``polars`` module, or a ``ValueError`` that says how to install it."""
    try:
        import polars
    except ImportError:
        raise ValueError(
            "reading Parquet DATA needs Polars, which is not installed: pip install polars "
            "(or give a CSV file)"
        ) from None
    return polars


def _rake_parquet(args: argparse.Namespace, files: list[Path]) -> Any:
    """Rake Parquet ``files`` as one Polars ``LazyFrame``; stream the weights to ``--out``.

    Only each file's schema is read up front (:func:`_parquet_schema`); the rows are read by
    :func:`raking.rake` on the LazyFrame (codes and cell sums, streamed) and again when the
    weights are written with ``sink_parquet`` / ``sink_csv``: no step holds all rows.
    """
    from raking.survey.frontend import rake

    pl = _polars()
    schema = _parquet_schema(pl, files)
    args.data = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more files)"
    targets = _targets(args, _empty_like(pl, schema))
    if args.weights is not None:
        _parquet_weights(schema, args.weights, args.data)
    frame = pl.scan_parquet([str(f) for f in files])
    try:
        result = rake(frame, targets, **_keywords(args))
        weights = _weights_frame(pl, result.weights).with_row_index("row")
        _sink(pl, weights.with_columns(pl.col("row").cast(pl.Int64)), args.out)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"cannot read DATA file(s) {args.data}: {exc}") from None
    return result


def _sink(pl: Any, weights: Any, out: Path) -> None:
    """Stream the LazyFrame ``weights`` to ``out`` (Parquet or CSV by its suffix).

    Older Polars (1.0) cannot stream a row index after a join; then the two output columns
    (16 bytes a row, not the data) are collected first, with a warning.
    """
    try:
        if _is_parquet(out):
            weights.sink_parquet(out)
        else:
            weights.sink_csv(out)
    except pl.exceptions.InvalidOperationError as exc:
        if "not yet supported" not in str(exc):
            raise
        warnings.warn(
            f"Polars {pl.__version__} cannot stream the weights to --out; the columns row and "
            "weight (16 bytes a row) were collected in memory first. A newer Polars streams "
            "them.",
            UserWarning,
            stacklevel=2,
        )
        table = weights.collect()
        if _is_parquet(out):
            table.write_parquet(out)
        else:
            table.write_csv(out)


def _parquet_schema(pl: Any, files: list[Path]) -> dict[str, Any]:
    """The columns and types of the Parquet ``files`` (metadata only); they must all agree."""
    schema: dict[str, Any] = {}
    for f in files:
        try:
            found = dict(pl.read_parquet_schema(f))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise ValueError(f"cannot read DATA file {f} as Parquet: {exc}") from None
        if schema and found != schema:
            raise ValueError(
                f"DATA file {f} has columns {_columns(found)}, but {files[0]} has "
                f"{_columns(schema)}; every file must hold the same columns with the same types"
            )
        schema = found
    return schema


def _columns(schema: dict[str, Any]) -> str:
    return _listed([f"{name} ({dtype})" for name, dtype in schema.items()], str)


def _empty_like(pl: Any, schema: dict[str, Any]) -> Any:
    """An empty pandas DataFrame with the schema's columns, for the target levels' types.

    Integer columns are read as ``int64`` and floats as ``float64`` (a level is compared with
    the values, never cast to the file's narrower type), booleans as ``bool``, anything else
    (text, categorical) as text.
    """
    import pandas as pd

    def dtype(kind: Any) -> str:
        if kind.is_integer():
            return "int64"
        if kind.is_float():
            return "float64"
        return "bool" if kind == pl.Boolean else "object"

    return pd.DataFrame({name: pd.Series([], dtype=dtype(k)) for name, k in schema.items()})


def _parquet_weights(schema: dict[str, Any], name: str, shown: object) -> None:
    """``--weights``: a numeric column of the Parquet files (no conversion from text)."""
    if name not in schema:
        raise ValueError(
            f"--weights {name}: no such column in DATA file {shown}, whose columns are "
            f"{_listed(list(schema))}"
        )
    if not schema[name].is_numeric():
        raise ValueError(
            f"--weights {name}: column {name!r} of DATA file {shown} holds {schema[name]}, not "
            "numbers; store the design weights as a numeric column"
        )


def _weights_frame(pl: Any, weights: Any) -> Any:
    """The weights of a Polars rake as a one-column (``weight``) LazyFrame in row order."""
    if isinstance(weights, pl.LazyFrame):
        (name,) = weights.collect_schema().names()
        return weights.rename({name: "weight"})
    return pl.DataFrame({"weight": weights}).lazy()


RAKE_KEYWORDS = ("na", "unknown", "total", "steps", "tol", "max_iter", "weights", "bounds")
"""Keyword arguments of :func:`raking.rake` that ``raking rake`` sets with a flag."""


def as_flags(message: str, keywords: tuple[str, ...] = RAKE_KEYWORDS) -> str:
    """``message`` with the keyword arguments ``keywords`` written as command-line flags.

    The library's messages say what to pass in Python (``na='drop'``, ``total=N``,
    ``bounds=(0.5, 2)``, ``targets['age']``, ``n=(1000,)``, ``reps must be ...``); at the
    command line the fix is a flag (``--na drop``, ``--total N``, ``--bounds 0.5 2``,
    ``--target age``, ``--n 1000``, ``--reps must be ...``). Underscores become hyphens.
    """
    names = "|".join(keywords)

    def flag(match: re.Match[str]) -> str:
        return "--" + match.group(1).replace("_", "-")

    rules: list[tuple[str, Any]] = [
        (rf"\b({names})=(['\"])([\w.:/-]+)\2", lambda m: f"{flag(m)} {m.group(3)}"),
        (
            rf"\b({names})[= ]\(\s*([^,()]+?),\s*([^,()]+?)\)",
            lambda m: f"{flag(m)} {m.group(2)} {m.group(3)}",
        ),
        (rf"\b({names})=\(\s*([^,()]+?),?\s*\)", lambda m: f"{flag(m)} {m.group(2)}"),
        (rf"\b({names})=(?=[\w.+-])", lambda m: flag(m) + " "),
        (rf"\b({names})=(?=\W|$)", flag),
        (rf"^({names}) (?=must\b)", lambda m: flag(m) + " "),
        (r"\btargets\[(['\"])(.*?)\1\]", lambda m: f"--target {m.group(2)}"),
    ]
    underscored = "|".join(k for k in keywords if "_" in k)
    if underscored:  # an identifier, never prose: also without "="
        rules.append((rf"\b({underscored})\b", flag))
    for pattern, replace in rules:
        message = re.sub(pattern, replace, message)
    return message


def _show_warning(message: Any, category: Any, *_: Any, **__: Any) -> None:
    """Print a warning as one line on stderr, with the flags (not the source line)."""
    print(f"raking rake: {category.__name__}: {as_flags(str(message))}", file=sys.stderr)


def positive_int(text: str) -> int:
    """Parse a flag's value: an integer >= 1."""
    return _integer(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """Parse a flag's value: an integer >= 0."""
    return _integer(text, 0, "a non-negative integer")


def _integer(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Parse a flag's value: a finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """Parse a flag's value: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _check_out(args: argparse.Namespace, data: list[Path]) -> None:
    """``--out`` must be a new or existing file, not an input, in a folder we can write to."""
    import tempfile

    out: Path = args.out
    if out.is_dir():
        args.parser.error(f"--out {out} is a folder; give a file name, e.g. {out / 'weights.csv'}")
    inputs = [*data, *(Path(spec.partition("=")[2]) for spec in args.target)]
    if out.exists() and any(p.exists() and out.samefile(p) for p in inputs):
        args.parser.error(f"--out {out} is one of the input files; give a new file name")
    folder = out.parent
    if not folder.is_dir():
        args.parser.error(f"--out {out}: the folder {folder} does not exist; create it first")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        args.parser.error(
            f"--out {out}: cannot write into {folder} ({exc.strerror or exc}); give a file in a "
            "folder you can write to"
        )


def _read_csv(path: Path, role: str, **kwargs: Any) -> Any:
    """``pandas.read_csv(path)``, with errors that name the file; at least one row."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{role} file {path} is empty; it needs a header line naming the columns, then one "
            "row per line"
        ) from None
    except (ValueError, OSError) as exc:  # parser errors, undecodable bytes, missing file
        raise ValueError(f"cannot read {role} file {path}: {exc}") from None
    if len(frame) == 0:
        raise ValueError(
            f"{role} file {path} has a header line ({', '.join(map(str, frame.columns))}) but no "
            "rows"
        )
    return frame


def _read_target(
    spec: str, data: Any, args: argparse.Namespace, files: dict[str, str]
) -> tuple[str, Any]:
    """``COLUMN=FILE`` as ``(column, Series of targets indexed by level)``.

    The levels are read as text and converted to the type of ``data[column]`` (see
    :func:`_levels_like`); the targets must be numbers. Records ``column -> FILE`` in ``files``.
    """
    import pandas as pd

    column, sep, file = spec.partition("=")
    if not sep or not column or not file:
        args.parser.error(f"--target must be COLUMN=FILE, got {spec!r}")
    if column in files:
        args.parser.error(
            f"--target {column}= is given twice ({files[column]} and {file}); give each column "
            "once, with all its levels in one file"
        )
    files[column] = file
    if column not in data.columns:
        raise ValueError(
            f"--target {spec}: {column!r} is not a column of DATA file {args.data}, whose header "
            f"line names {_listed(list(data.columns))}; the first line of DATA must name its "
            "columns"
        )
    where = f"--target {spec}"
    frame = _read_csv(Path(file), "target", dtype=str)
    frame.columns = [str(c).strip() for c in frame.columns]
    if sorted(frame.columns) != ["level", "target"]:
        raise ValueError(
            f"{where}: the first line of {file} must be the header level,target; it reads "
            f"{','.join(frame.columns)}. Add that line (a file without it would lose its first "
            "level) or rename the columns."
        )
    levels = _levels_like(frame["level"], data[column], where)
    duplicated = levels[levels.duplicated(keep=False)].unique()
    if len(duplicated):
        raise ValueError(
            f"{where}: level(s) {_listed(duplicated.tolist())} appear more than once in {file}; "
            "give each level one row"
        )
    values = pd.to_numeric(frame["target"].str.strip(), errors="coerce")
    bad = values.isna()
    if bad.any():
        rows = [f"line {i + 2}: {frame['target'][i]!r}" for i in frame.index[bad]]
        raise ValueError(
            f"{where}: the target column of {file} must hold numbers (counts or shares); "
            f"{_listed(rows, str)}"
        )
    return column, pd.Series(values.to_numpy(float), index=levels.to_numpy(), name=column)


def _levels_like(levels: Any, column: Any, where: str) -> Any:
    """The text ``levels`` converted exactly to the type of the data ``column``.

    Numbers must be numbers, and integers whole numbers: a careful user who writes 1.9 for an
    integer column made a mistake that casting to 1 would hide. Booleans are ``True`` /
    ``False`` (any case). Text columns keep the text as written. An empty level stays missing
    (the target of the missing level with ``--na level``).
    """
    import numpy as np
    import pandas as pd

    text = levels.str.strip()
    kind = column.dtype.kind
    if kind == "b":
        lowered = text.str.lower()
        wrong = text.notna() & ~lowered.isin(["true", "false"])
        _reject(text[wrong], f"are not True or False, but column {column.name!r} is boolean", where)
        return lowered.map({"true": True, "false": False})
    if kind not in "iuf":
        return levels
    numbers = pd.to_numeric(text, errors="coerce")
    _reject(
        text[numbers.isna() & text.notna()],
        f"are not numbers, but column {column.name!r} holds numbers ({column.dtype})",
        where,
    )
    if kind in "iu":
        fraction = numbers.notna() & (numbers != np.floor(numbers))
        _reject(
            text[fraction],
            f"are not whole numbers, but column {column.name!r} holds integers ({column.dtype})",
            where,
        )
        if numbers.notna().all():
            return numbers.astype(column.dtype)
    return numbers.astype("float64")


def _reject(wrong: Any, problem: str, where: str) -> None:
    if len(wrong):
        raise ValueError(
            f"{where}: level(s) {_listed(list(wrong))} {problem}; write the levels exactly as "
            "they appear in that column of DATA"
        )


def _numeric_weights(data: Any, name: str, path: Path) -> None:
    """Check that ``data[name]`` exists and holds numbers; convert it in place (our own copy)."""
    import pandas as pd

    if name not in data.columns:
        raise ValueError(
            f"--weights {name}: no such column in DATA file {path}, whose header line names "
            f"{_listed(list(data.columns))}"
        )
    column = data[name]
    if column.dtype.kind in "iuf":
        return
    numbers = pd.to_numeric(column.astype("string").str.strip(), errors="coerce")
    wrong = column[numbers.isna() & column.notna()]
    if len(wrong):
        rows = [f"row {i} (line {i + 2}): {v!r}" for i, v in wrong.items()]
        raise ValueError(
            f"--weights {name}: column {name!r} of DATA file {path} must hold numbers (design "
            f"weights); {_listed(rows, str)}"
        )
    data[name] = numbers.astype("float64")


def _listed(items: list[Any], show: Any = repr) -> str:
    """The first few ``items``, each written by ``show``, and how many more there are."""
    shown = ", ".join(show(i) for i in items[:_SHOWN])
    more = len(items) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
