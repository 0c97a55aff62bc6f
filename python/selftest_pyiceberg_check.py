#!/usr/bin/env python3
"""Self-test for pyiceberg_check.py without the Rust side.

Creates a scratch table shaped like the Rust crate's ``sales_history`` table
with PyIceberg itself (SqlCatalog on SQLite in a temp warehouse), runs
``pyiceberg_check.py append`` twice and ``read`` a few ways, and checks the
JSON. Exits 0 and prints ``N passed, 0 failed`` on success.

    "$(scripts/venv.sh | tail -n1)" python/selftest_pyiceberg_check.py [--keep]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "pyiceberg_check.py")
NS = "pricing_intelligence_selftest"
DIM = 8


def create_table(warehouse: str) -> None:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import MonthTransform
    from pyiceberg.types import (
        DecimalType,
        DoubleType,
        ListType,
        NestedField,
        StringType,
        TimestampType,
    )

    schema = Schema(
        NestedField(1, "product_id", StringType(), required=True),
        NestedField(2, "tenant_id", StringType(), required=True),
        NestedField(3, "category", StringType(), required=False),
        NestedField(4, "brand", StringType(), required=False),
        NestedField(5, "condition", StringType(), required=False),
        NestedField(6, "sold_price", DecimalType(10, 2), required=True),
        NestedField(7, "sold_date", TimestampType(), required=True),
        NestedField(8, "season", StringType(), required=False),
        NestedField(9, "image_s3_key", StringType(), required=False),
        NestedField(10, "embedding", ListType(13, DoubleType(), element_required=True), required=False),
        NestedField(11, "description", StringType(), required=False),
        NestedField(12, "source", StringType(), required=False),
    )
    spec = PartitionSpec(
        PartitionField(source_id=7, field_id=1000, transform=MonthTransform(), name="sold_date_month")
    )
    catalog = SqlCatalog(
        "sales_history",
        uri=f"sqlite:///{warehouse}/catalog.db",
        warehouse=f"file://{warehouse}",
    )
    catalog.create_namespace(NS)
    # Same explicit location the Rust crate uses (both catalogs would default to
    # {warehouse}/{namespace}/{table}, without `.db`).
    catalog.create_table(
        (NS, "sales_history"),
        location=f"file://{warehouse}/{NS}.db/sales_history",
        schema=schema,
        partition_spec=spec,
        properties={
            "format-version": "2",
            "write.parquet.compression-codec": "zstd",
            "sales_history.embedding-dimension": str(DIM),
        },
    )


def run(*args: str, expect_rc: int = 0) -> dict:
    proc = subprocess.run([sys.executable, CHECK, *args], capture_output=True, text=True)
    if proc.returncode != expect_rc:
        raise AssertionError(
            f"{args}: rc={proc.returncode} (want {expect_rc})\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
        )
    if expect_rc != 0:
        assert proc.stdout == "", f"error run wrote to stdout: {proc.stdout!r}"
        assert proc.stderr.strip(), "error run wrote nothing to stderr"
        return {}
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"want one JSON line, got {proc.stdout!r}"
    return json.loads(lines[0])


def main() -> int:
    keep = "--keep" in sys.argv
    tmp = tempfile.mkdtemp(prefix="pyiceberg-selftest-")
    warehouse = os.path.join(tmp, "warehouse")
    os.makedirs(warehouse)
    passed = 0
    try:
        create_table(warehouse)
        common = ["--warehouse", warehouse, "--namespace", NS]

        # empty table
        empty = run("read", *common)
        assert empty["row_count"] == 0 and empty["rows"] == [] and empty["snapshots"] == [], empty
        passed += 1

        a1 = run("append", *common, "--rows", "30", "--tenant", "t1", "--seed", "7")
        assert a1["appended"] == 30 and isinstance(a1["snapshot_id"], int), a1
        a2 = run("append", *common, "--rows", "5", "--tenant", "t0", "--seed", "1")
        assert a2["appended"] == 5 and a2["snapshot_id"] != a1["snapshot_id"], a2
        passed += 1

        out = run("read", *common)
        assert out["row_count"] == 35, out["row_count"]
        assert out["format_version"] == 2
        assert [f["id"] for f in out["schema"]] == list(range(1, 13))
        emb = next(f for f in out["schema"] if f["name"] == "embedding")
        assert emb["type"] == "list<double>" and emb["element_id"] == 13 and emb["element_required"], emb
        assert next(f for f in out["schema"] if f["name"] == "sold_price")["type"] == "decimal(10, 2)"
        assert out["partition_spec"] == [
            {"source_id": 7, "field_id": 1000, "name": "sold_date_month", "transform": "month"}
        ], out["partition_spec"]
        assert out["properties"]["sales_history.embedding-dimension"] == str(DIM)
        assert [s["operation"] for s in out["snapshots"]] == ["append", "append"]
        assert out["snapshots"][1]["parent_id"] == out["snapshots"][0]["snapshot_id"]
        assert out["snapshots"][1]["summary"]["total-records"] == "35"
        assert out["codecs"] == ["ZSTD"], out["codecs"]
        assert len(out["data_files"]) == 12 + 5, out["data_files"]  # one file per month partition per append
        assert out["location"] == f"file://{warehouse}/{NS}.db/sales_history", out["location"]
        assert all(p.startswith(out["location"] + "/data/") for p in out["data_files"]), out["data_files"]
        passed += 1

        # data file locations in the three spellings iceberg-rust / pyiceberg may use
        sys.path.insert(0, HERE)
        import pyiceberg_check as pc
        from pyiceberg.catalog.sql import SqlCatalog

        cat = SqlCatalog("sales_history", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
        tbl = cat.load_table((NS, "sales_history"))
        path = pc.local_path(out["data_files"][0])
        assert path.startswith("/") and os.path.isfile(path), path
        for spelling in (f"file://{path}", f"file:{path}", path):
            assert pc.local_path(spelling) == path, spelling
            assert pc.parquet_codecs(tbl, [spelling]) == ["ZSTD"], spelling
        passed += 1

        rows = out["rows"]
        assert len(rows) == 35
        keys = [(r["tenant_id"], r["product_id"], r["sold_date"]) for r in rows]
        assert keys == sorted(keys) and rows[0]["tenant_id"] == "t0"
        for r in rows:
            assert len(r["sold_price"].split(".")[1]) == 2, r["sold_price"]
            assert r["sold_date"].startswith("2024-") and len(r["sold_date"]) == 26, r["sold_date"]
            assert (r["embedding_len"] is None) == (r["embedding_sum"] is None)
            assert r["embedding_len"] in (None, DIM)
            assert r["source"] == "pyiceberg"
        assert any(r["embedding_len"] is None for r in rows) and any(r["brand"] is None for r in rows)
        passed += 1

        # determinism: same seed + tenant -> same rows
        t1 = [r for r in rows if r["tenant_id"] == "t1"]
        tmp2 = os.path.join(tmp, "warehouse2")
        os.makedirs(tmp2)
        create_table(tmp2)
        run("append", "--warehouse", tmp2, "--namespace", NS, "--rows", "30", "--tenant", "t1", "--seed", "7")
        again = run("read", "--warehouse", tmp2, "--namespace", NS)["rows"]
        assert again == t1, "append is not deterministic"
        passed += 1

        # time travel + --no-rows
        old = run("read", *common, "--snapshot-id", str(a1["snapshot_id"]), "--no-rows")
        assert old["row_count"] == 30 and "rows" not in old and len(old["data_files"]) == 12, old
        passed += 1

        # errors: non-zero exit, message on stderr, nothing on stdout
        run("read", *common, "--snapshot-id", "12345", expect_rc=1)
        run("read", "--warehouse", warehouse, "--namespace", "nope", expect_rc=1)
        run("read", "--warehouse", os.path.join(tmp, "missing"), "--namespace", NS, expect_rc=1)
        run("append", *common, "--rows", "1", expect_rc=2)
        assert not os.path.exists(os.path.join(tmp, "missing", "catalog.db"))
        passed += 1
    except AssertionError as e:
        print(f"selftest FAILED: {e}", file=sys.stderr)
        print(f"{passed} passed, 1 failed")
        return 1
    finally:
        if keep:
            print(f"kept scratch warehouse at {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
