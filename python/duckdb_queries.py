#!/usr/bin/env python3
"""The seed's 12 sample queries on DuckDB, over the sales_history table read by pyiceberg.

The Rust test tests/it/sql_queries.rs runs the same SQL text (sql/sales_history_queries.sql)
on the crate's own engine and compares the results with this script's output.

    duckdb_queries.py --warehouse DIR --namespace NS [--sql FILE] [--query N]

The table is opened through pyiceberg's SqlCatalog (catalog name ``sales_history``, SQLite
``DIR/catalog.db``), read with ``scan().to_arrow()`` and registered in DuckDB as
``sales_history``. Prints one JSON object:

    {"queries": [{"number": 1, "name": "...", "columns": [...], "rows": [[...], ...]}, ...]}

Values are normalised for comparison: decimals become floats, timestamps integers
(microseconds since the epoch, the naive value read as UTC), dates days since the epoch.
Exit codes: 0 ok, 1 error (message on stderr).
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import math
import os
import re
import sys

CATALOG_NAME = "sales_history"
HEADER = re.compile(r"^-- Query (\d+):\s*(.+?)\s*$")
EPOCH = dt.datetime(1970, 1, 1)


def parse_queries(text: str) -> list[dict]:
    queries: list[dict] = []
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            queries.append({"number": int(m.group(1)), "name": m.group(2), "sql": ""})
        elif queries:
            queries[-1]["sql"] += line + "\n"
    for q in queries:
        q["sql"] = q["sql"].rstrip().rstrip(";").rstrip()
    return queries


def normalise(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        delta = v - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(v, dt.date):
        return (v - EPOCH.date()).days
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [normalise(x) for x in v]
    return str(v)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warehouse", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--table", default="sales_history")
    p.add_argument(
        "--sql",
        default=os.path.join(os.path.dirname(__file__), "..", "sql", "sales_history_queries.sql"),
    )
    p.add_argument("--query", type=int, help="run only this query number")
    args = p.parse_args()

    import duckdb
    from pyiceberg.catalog.sql import SqlCatalog

    wh = os.path.abspath(args.warehouse)
    db = os.path.join(wh, "catalog.db")
    if not os.path.exists(db):
        print(f"no catalog at {db}", file=sys.stderr)
        return 1
    catalog = SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{db}", warehouse=f"file://{wh}")
    table = catalog.load_table(f"{args.namespace}.{args.table}")
    arrow = table.scan().to_arrow()

    con = duckdb.connect()
    con.register("sales_history", arrow)
    with open(args.sql, encoding="utf-8") as f:
        queries = parse_queries(f.read())
    out = []
    for q in queries:
        if args.query is not None and q["number"] != args.query:
            continue
        cur = con.execute(q["sql"])
        columns = [d[0] for d in cur.description]
        rows = [[normalise(v) for v in row] for row in cur.fetchall()]
        out.append({"number": q["number"], "name": q["name"], "columns": columns, "rows": rows})
    json.dump({"duckdb": duckdb.__version__, "queries": out}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - one line on stderr for the Rust test
        print(f"duckdb_queries.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
