"""pyiceberg variants of `examples/bench_soak`: many small appends into our table, measured.

The harness creates one local warehouse per variant with the Rust crate (our schema, table
properties and sort order), sets the variant's table properties, writes a pool of sample rows
to a Parquet file, then runs this script::

    python python/bench_soak_pyiceberg.py --pool POOL.parquet --rows 20 --commits 1000 \
        --every 200 --tenant tenant-001 --month-start 2025-06-01T00:00:00 \
        --month-end 2025-07-01T00:00:00 --variant py-fast=DIR1 --variant py-merge=DIR2

Each variant is ``NAME=WAREHOUSE``: the table ``pricing_intelligence_{stage}.sales_history`` in
``WAREHOUSE/catalog.db`` (SqlCatalog named ``sales_history``). Commit ``i`` appends rows
``i*K .. i*K+K`` of the pool (cyclically) with ``Table.append``, which is a merge append when
the table says ``commit.manifest-merge.enabled=true`` and a fast append otherwise (pyiceberg
0.x picks it from that property). Variants take turns commit by commit.

Every ``--every`` commits, and after the last, one JSON object per variant on stdout (one
line each, flushed)::

    {"variant", "commits", "commit_p50_ms", "commit_p99_ms", "plan_ms", "count_ms",
     "count_rows", "metadata_json_bytes", "metadata_files", "metadata_bytes",
     "live_data_files", "manifests", "snapshots"}

``plan_ms``: ``load_table`` + ``scan(row_filter=tenant and month).plan_files()`` (the Rust
side's reads reload the table too); ``count_ms``: the same scan's ``to_arrow().num_rows``
(projection: the filter's columns); both the upper median of ``--reps`` runs. Errors: a
message on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time

CATALOG_NAME = "sales_history"


def plain(field):
    """The field without metadata (the Rust writer's field ids), recursively."""
    import pyarrow as pa

    t = field.type
    if pa.types.is_list(t):
        t = pa.list_(plain(t.value_field))
    return pa.field(field.name, t, nullable=field.nullable)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank, as `examples/common/stats.rs`."""
    if not values:
        return float("nan")
    s = sorted(values)
    r = math.ceil(p / 100.0 * len(s))
    return s[min(max(r, 1), len(s)) - 1]


def upper_median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if s else float("nan")


def local_path(location: str) -> str:
    return location[len("file://") :] if location.startswith("file://") else location


class Variant:
    def __init__(self, name: str, warehouse: str, ident: str):
        from pyiceberg.catalog.sql import SqlCatalog

        wh = os.path.abspath(warehouse)
        db = os.path.join(wh, "catalog.db")
        if not os.path.isfile(db):
            raise SystemExit(f"error: catalog database does not exist: {db}")
        self.name = name
        self.ident = ident
        self.catalog = SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{db}", warehouse=f"file://{wh}")
        self.table = self.catalog.load_table(ident)
        self.window: list[float] = []

    def commit(self, data) -> None:
        start = time.perf_counter()
        self.table.append(data)
        self.window.append((time.perf_counter() - start) * 1e3)

    def measure(self, commits: int, row_filter, reps: int) -> dict:
        plans, counts, rows = [], [], 0
        for _ in range(reps):
            start = time.perf_counter()
            fresh = self.catalog.load_table(self.ident)
            list(fresh.scan(row_filter=row_filter).plan_files())
            plans.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            fresh = self.catalog.load_table(self.ident)
            rows = fresh.scan(
                row_filter=row_filter, selected_fields=("tenant_id", "sold_date")
            ).to_arrow().num_rows
            counts.append((time.perf_counter() - start) * 1e3)
        table = self.catalog.load_table(self.ident)
        self.table = table
        metadata_dir = os.path.join(local_path(table.location()), "metadata")
        names = os.listdir(metadata_dir)
        snapshot = table.current_snapshot()
        row = {
            "variant": self.name,
            "commits": commits,
            "commit_p50_ms": percentile(self.window, 50),
            "commit_p99_ms": percentile(self.window, 99),
            "plan_ms": upper_median(plans),
            "count_ms": upper_median(counts),
            "count_rows": rows,
            "metadata_json_bytes": os.path.getsize(local_path(table.metadata_location)),
            "metadata_files": len(names),
            "metadata_bytes": sum(os.path.getsize(os.path.join(metadata_dir, n)) for n in names),
            "live_data_files": len(list(table.scan().plan_files())),
            "manifests": len(snapshot.manifests(table.io)) if snapshot else 0,
            "snapshots": len(table.metadata.snapshots),
        }
        self.window = []
        return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", required=True, help="Parquet file of sample rows (our layout)")
    p.add_argument("--rows", type=int, default=20, help="rows per commit")
    p.add_argument("--commits", type=int, required=True, help="commits per variant")
    p.add_argument("--every", type=int, required=True, help="commits between checkpoints")
    p.add_argument("--reps", type=int, default=3, help="runs of each read (upper median)")
    p.add_argument("--stage", default="soak")
    p.add_argument("--tenant", required=True)
    p.add_argument("--month-start", required=True, help="ISO timestamp (UTC, inclusive)")
    p.add_argument("--month-end", required=True, help="ISO timestamp (UTC, exclusive)")
    p.add_argument("--variant", action="append", required=True, help="NAME=WAREHOUSE")
    args = p.parse_args(argv)
    if args.rows < 1 or args.commits < 1 or args.every < 1 or args.reps < 1:
        p.error("--rows, --commits, --every and --reps must be at least 1")

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

    ident = f"pricing_intelligence_{args.stage}.sales_history"
    variants = []
    for spec in args.variant:
        name, sep, warehouse = spec.partition("=")
        if not sep or not name or not warehouse:
            p.error(f"--variant {spec!r}: expected NAME=WAREHOUSE")
        variants.append(Variant(name, warehouse, ident))

    pool = pq.read_table(args.pool)
    target = variants[0].table.schema().as_arrow()
    pool = pool.cast(pa.schema([plain(f) for f in pool.schema])).select(target.names)
    pool = pool.cast(target)
    if pool.num_rows < args.rows:
        raise SystemExit(f"error: the pool holds {pool.num_rows} rows, fewer than --rows")

    start = dt.datetime.fromisoformat(args.month_start).replace(tzinfo=None)
    end = dt.datetime.fromisoformat(args.month_end).replace(tzinfo=None)
    row_filter = And(
        EqualTo("tenant_id", args.tenant),
        And(
            GreaterThanOrEqual("sold_date", start.isoformat()),
            LessThan("sold_date", end.isoformat()),
        ),
    )

    slices = pool.num_rows // args.rows
    for i in range(args.commits):
        offset = (i % slices) * args.rows
        data = pool.slice(offset, args.rows)
        for v in variants:
            v.commit(data)
        done = i + 1
        if done % args.every == 0 or done == args.commits:
            for v in variants:
                print(json.dumps(v.measure(done, row_filter, args.reps)), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - one readable line for the harness
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
