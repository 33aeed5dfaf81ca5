"""Mail-merge rows: a list of dicts as given, or read from a .csv, .json or .jsonl file (local or fsspec)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping

from airflow_graph_mail.errors import MessageValidationError

ROW_FILE_TYPES = (".csv", ".json", ".jsonl")


def load_rows(rows) -> list[dict]:
    if isinstance(rows, str) or hasattr(rows, "__fspath__"):
        rows = _read(str(rows))
    if isinstance(rows, Mapping) or not hasattr(rows, "__iter__"):
        raise MessageValidationError("rows", f"expected a list of dicts or a {'/'.join(ROW_FILE_TYPES)} file, "
                                     f"got {type(rows).__name__}")
    rows = list(rows)
    for position, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise MessageValidationError(f"rows[{position}]", f"expected a dict of column values, got "
                                         f"{type(row).__name__}")
    return [dict(row) for row in rows]


def _read(location: str) -> list:
    import fsspec

    lowered = location.lower()
    if not lowered.endswith(ROW_FILE_TYPES):
        raise MessageValidationError("rows", f"{location!r}: give a list of dicts or a file ending in "
                                     f"{', '.join(ROW_FILE_TYPES)}")
    try:
        with fsspec.open(location, "r", encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except (OSError, ValueError) as err:
        raise MessageValidationError("rows", f"cannot read {location!r}: {err}") from None
    try:
        if lowered.endswith(".csv"):
            return list(csv.DictReader(io.StringIO(text)))
        if lowered.endswith(".jsonl"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except ValueError as err:
        raise MessageValidationError("rows", f"{location!r} is not valid {lowered.rsplit('.', 1)[-1]}: {err}") \
            from None
