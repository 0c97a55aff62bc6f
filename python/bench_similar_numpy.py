#!/usr/bin/env python3
"""NumPy brute-force baseline for `examples/bench_similar.rs`.

Reads the same sales_history table through pyiceberg (SqlCatalog on the local warehouse),
then ranks every row by cosine similarity to the query with NumPy and keeps the top k.
Timed: pyiceberg scan (with and without a one-month filter) + the NumPy ranking.

Prints one JSON object: {"full": {...}, "month": {...}} with median seconds and the top ids.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan


def topk(table: pa.Table, query: np.ndarray, k: int):
    emb = table.column("embedding").combine_chunks()
    valid = pc.is_valid(emb)
    if emb.null_count:
        table = table.filter(valid)
        emb = table.column("embedding").combine_chunks()
    flat = emb.flatten().to_numpy(zero_copy_only=False)
    dim = query.shape[0]
    mat = flat.reshape(-1, dim)
    norms = np.linalg.norm(mat, axis=1)
    scores = (mat @ query) / (norms * np.linalg.norm(query))
    k = min(k, scores.shape[0])
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    ids = table.column("product_id").to_pylist()
    return [(ids[i], float(scores[i])) for i in idx]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warehouse", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--query-file", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--month-start", required=True, help="ISO timestamp, inclusive")
    ap.add_argument("--month-end", required=True, help="ISO timestamp, exclusive")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    query = np.array(json.load(open(a.query_file)), dtype=np.float64)
    cat = SqlCatalog("sales_history", uri=f"sqlite:///{a.warehouse}/catalog.db", warehouse=f"file://{a.warehouse}")
    table = cat.load_table(f"{a.namespace}.sales_history")
    cols = ("product_id", "tenant_id", "sold_date", "sold_price", "embedding")
    month = And(GreaterThanOrEqual("sold_date", a.month_start), LessThan("sold_date", a.month_end))
    out = {}
    for name, row_filter in (("full", None), ("month", month)):
        times, rows, top = [], 0, []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            scan = table.scan(selected_fields=cols, row_filter=row_filter) if row_filter is not None else table.scan(selected_fields=cols)
            data = scan.to_arrow()
            top = topk(data, query, a.k)
            times.append(time.perf_counter() - t0)
            rows = data.num_rows
        out[name] = {"median_s": statistics.median(times), "min_s": min(times), "rows": rows, "top": top}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
