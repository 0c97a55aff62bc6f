#!/usr/bin/env python3
"""pyiceberg side of examples/bench_scan.rs: the same four scans, timed on request.

    bench_scan_pyiceberg.py --warehouse DIR --namespace NS --tenant T --month YYYY-MM

Reads commands on stdin, one per line, and answers each with one JSON line on stdout, so
the Rust bench can interleave its runs with ours in one process pair:

    full | no_embedding | month_tenant | tenant | load_plan   ->  {"scan": ..., "ms": ..., "rows": ...}
    quit

- full:          table.scan().to_arrow()                      (all columns)
- no_embedding:  the same without the embedding column
- month_tenant:  sold_date in the month (half-open) and tenant_id = T, all columns
- tenant:        tenant_id = T over all months, all columns
- load_plan:     catalog.load_table(...) + scan().plan_files() (catalog opened once)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

CATALOG_NAME = "sales_history"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--warehouse", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--month", required=True, help="YYYY-MM")
    args = p.parse_args()

    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

    wh = os.path.abspath(args.warehouse)
    catalog = SqlCatalog(
        CATALOG_NAME, uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}"
    )
    ident = f"{args.namespace}.sales_history"
    table = catalog.load_table(ident)
    year, month = (int(x) for x in args.month.split("-"))
    start = dt.datetime(year, month, 1)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1)
    month_tenant = And(
        GreaterThanOrEqual("sold_date", start.isoformat()),
        LessThan("sold_date", end.isoformat()),
        EqualTo("tenant_id", args.tenant),
    )
    columns = [f.name for f in table.schema().fields]
    no_embedding = tuple(c for c in columns if c != "embedding")

    def run(scan: str) -> int:
        if scan == "full":
            return table.scan().to_arrow().num_rows
        if scan == "no_embedding":
            return table.scan(selected_fields=no_embedding).to_arrow().num_rows
        if scan == "month_tenant":
            return table.scan(row_filter=month_tenant).to_arrow().num_rows
        if scan == "tenant":
            return table.scan(row_filter=EqualTo("tenant_id", args.tenant)).to_arrow().num_rows
        if scan == "load_plan":
            t = catalog.load_table(ident)
            return len(list(t.scan().plan_files()))
        raise ValueError(f"unknown scan {scan!r}")

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if not cmd:
            continue
        if cmd == "quit":
            break
        t0 = time.perf_counter()
        rows = run(cmd)
        ms = (time.perf_counter() - t0) * 1000.0
        print(json.dumps({"scan": cmd, "ms": ms, "rows": rows}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
