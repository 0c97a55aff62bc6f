"""Python write baselines for `examples/bench_write.rs`, on the harness's own data.

Two timings of the same Arrow table (loaded from a Parquet file, untimed):

* ``pyiceberg``: ``Table.append`` into a fresh ``SqlCatalog`` (SQLite) table with the
  sales_history schema, partitioned by ``month(sold_date)``, Snappy, 16,384-row row groups
  (the table's properties on the Rust side). Creating the catalog and the table is untimed;
  the append (Parquet files + manifests + commit) is timed.
* ``pyarrow``: ``pyarrow.parquet.write_table`` of the whole table to one Snappy file (the
  C++ encoder, default settings otherwise).

Standalone::

    python python/bench_write_baseline.py INPUT.parquet [--reps 3] [--work DIR]

prints one JSON object with every timing. The harness runs it as a server instead
(``--serve``): one JSON request per stdin line, ``{"input": path, "work": dir, "which":
"pyiceberg"|"pyiceberg_synced"|"pyarrow"}``, one JSON answer per stdout line, ``{"seconds": s, "rows": n}`` or
``{"error": text}``, so its runs interleave with the Rust ones without paying the Python start
up each time. Output files are deleted after each run (untimed). The first run of each
kind is preceded by an untimed warm-up on 100 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

_TABLES: dict[str, pa.Table] = {}


def _plain(field: pa.Field) -> pa.Field:
    """The field without metadata (Parquet field ids), recursively."""
    t = field.type
    if pa.types.is_list(t):
        t = pa.list_(_plain(t.value_field))
    return pa.field(field.name, t, nullable=field.nullable)


def load(path: str) -> pa.Table:
    """Loads (and caches) the input table; never timed.

    The file carries the Rust table's field ids; they are dropped so that pyiceberg matches
    the columns of its own fresh table by name.
    """
    if path not in _TABLES:
        table = pq.read_table(path)
        schema = pa.schema([_plain(f) for f in table.schema])
        _TABLES[path] = table.cast(schema)
    return _TABLES[path]


def time_pyiceberg(table: pa.Table, work: str, sync: bool = False) -> float:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.transforms import MonthTransform

    os.makedirs(work, exist_ok=True)
    catalog = SqlCatalog(
        "bench",
        uri=f"sqlite:///{work}/catalog.db",
        warehouse=f"file://{work}",
    )
    catalog.create_namespace("bench")
    ice = catalog.create_table(
        "bench.sales_history",
        schema=table.schema,
        properties={
            "write.parquet.compression-codec": "snappy",
            "write.parquet.row-group-limit": "16384",
        },
    )
    with ice.update_spec() as spec:
        spec.add_field("sold_date", MonthTransform(), "sold_date_month")
    ice = catalog.load_table("bench.sales_history")
    start = time.perf_counter()
    ice.append(table)
    if sync:
        _fsync_tree(work)
    return time.perf_counter() - start


def time_pyiceberg_synced(table: pa.Table, work: str) -> float:
    """pyiceberg's append, then an fsync of every file under the table (pyiceberg does not
    sync its files; our append does: this compares like with like)."""
    return time_pyiceberg(table, work, sync=True)


def _fsync_tree(root: str) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def time_pyarrow(table: pa.Table, work: str) -> float:
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "one.parquet")
    start = time.perf_counter()
    pq.write_table(table, path, compression="snappy")
    return time.perf_counter() - start


RUNNERS = {
    "pyiceberg": time_pyiceberg,
    "pyiceberg_synced": time_pyiceberg_synced,
    "pyarrow": time_pyarrow,
}


_WARMED: set[str] = set()


def run(which: str, input_path: str, work: str) -> dict:
    table = load(input_path)
    if which not in _WARMED:
        # One untimed run on a few rows first: lazy imports and first-call set-up of
        # pyiceberg/pyarrow are not what is being measured.
        _WARMED.add(which)
        try:
            RUNNERS[which](table.slice(0, 100), work + "-warmup")
        finally:
            shutil.rmtree(work + "-warmup", ignore_errors=True)
    try:
        seconds = RUNNERS[which](table, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"seconds": seconds, "rows": table.num_rows}


def serve() -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            answer = run(req["which"], req["input"], req["work"])
        except Exception as e:  # reported to the harness, which fails loudly
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", nargs="?")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--work", default=None)
    p.add_argument("--serve", action="store_true")
    args = p.parse_args()
    if args.serve:
        serve()
        return
    if not args.input:
        p.error("INPUT.parquet is required unless --serve")
    base = args.work or tempfile.mkdtemp(prefix="bench-write-py-")
    out: dict[str, list[float]] = {k: [] for k in RUNNERS}
    for rep in range(args.reps):
        for which in RUNNERS:
            work = os.path.join(base, f"{which}-{rep}")
            out[which].append(run(which, args.input, work)["seconds"])
    out["rows"] = load(args.input).num_rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
