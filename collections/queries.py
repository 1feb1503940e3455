"""Reading a search log: the one reader of shopper-query TSV files (the judge and the evaluation share it)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path


def read_queries(path: str | Path, column: str = "English query") -> tuple[list[str], Counter]:
    """The non-empty queries of a TSV query log's ``column`` and a count of rows skipped, by reason."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"query log {path} does not exist")
    queries: list[str] = []
    skipped: Counter = Counter()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            return queries, skipped
        if column not in header:
            raise ValueError(f"query log {path} has no column '{column}'; columns: {header}")
        col = header.index(column)
        for row in reader:
            if len(row) <= col:
                skipped["missing column"] += 1
            elif not row[col].strip():
                skipped["empty query"] += 1
            else:
                queries.append(row[col].strip())
    return queries, skipped
