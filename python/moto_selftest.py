#!/usr/bin/env python3
"""Self-test for python/moto_server.py (and pyiceberg_check.py's Glue mode).

Starts the launcher as a subprocess, reads ``MOTO_PORT=<port>`` and checks with
boto3 (dummy credentials, us-east-1, endpoint 127.0.0.1 only):

  * Glue: create database + table; GetTable returns a VersionId; UpdateTable with
    the current VersionId succeeds, with a stale one fails with
    ConcurrentModificationException (HTTP 400); racing updates: exactly one wins;
    columns / Parameters are stored as sent; databases are per region.
  * S3 (path-style): create bucket, put / head / get / list / delete an object.
  * --record: one JSON line per request with the IAM action.
  * PyIceberg GlueCatalog against the emulator: 12-column table partitioned by
    month(sold_date), ``pyiceberg_check.py append`` / ``read`` with --catalog glue,
    a second append (Glue commit with a current VersionId), and a stale
    pyiceberg commit that is rejected.
  * The launcher exits 0 when its stdin is closed, and on SIGTERM.

Prints ``N passed, N failed`` and exits non-zero on any failure.

    PY="$(bash scripts/venv.sh | tail -n1)"; "$PY" python/moto_selftest.py [-v]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = os.path.join(HERE, "moto_server.py")
CHECK = os.path.join(HERE, "pyiceberg_check.py")
REGION = "us-east-1"
KEY = "testing"
NS = "pricing_intelligence_test"
BUCKET = "sales-history-selftest"
DIM = 8

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_ACCESS_KEY_ID"] = KEY
os.environ["AWS_SECRET_ACCESS_KEY"] = KEY
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

VERBOSE = "-v" in sys.argv


def note(msg: str) -> None:
    if VERBOSE:
        print(f"  {msg}", file=sys.stderr, flush=True)


class Launcher:
    """moto_server.py as a child process with stdin = pipe (kept open)."""

    def __init__(self, *extra: str):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, LAUNCHER, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._readline(timeout=60)
        self.startup_s = time.monotonic() - t0
        if not line.startswith("MOTO_PORT="):
            self.kill()
            raise AssertionError(f"launcher printed {line!r}, stderr: {self.proc.stderr.read()!r}")
        self.port = int(line.strip().split("=", 1)[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _readline(self, timeout: float) -> str:
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not out:
            self.kill()
            raise AssertionError(f"launcher printed nothing within {timeout}s")
        return out[0]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close_stdin_and_wait(self, timeout: float = 10) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.stdin.close()
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0


def client(service: str, endpoint: str, region: str = REGION):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def iceberg_glue_input(name: str, metadata_location: str, location: str) -> dict[str, Any]:
    """A TableInput shaped like the Iceberg Glue catalogs write it."""
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"table_type": "ICEBERG", "metadata_location": metadata_location},
        "StorageDescriptor": {
            "Location": location,
            "Columns": [
                {
                    "Name": "product_id",
                    "Type": "string",
                    "Comment": "id",
                    "Parameters": {"iceberg.field.id": "1", "iceberg.field.optional": "false", "iceberg.field.current": "true"},
                },
                {
                    "Name": "embedding",
                    "Type": "array<double>",
                    "Parameters": {"iceberg.field.id": "10", "iceberg.field.optional": "true", "iceberg.field.current": "true"},
                },
            ],
        },
    }


# --------------------------------------------------------------------------- checks


def check_glue_version_id(ctx: dict[str, Any]) -> None:
    g = client("glue", ctx["endpoint"])
    g.create_database(DatabaseInput={"Name": "vdb"})
    ti = iceberg_glue_input("t", "s3://b/t/metadata/00000.metadata.json", "s3://b/t")
    g.create_table(DatabaseName="vdb", TableInput=ti)
    t1 = g.get_table(DatabaseName="vdb", Name="t")["Table"]
    v1 = t1.get("VersionId")
    assert isinstance(v1, str) and v1, t1
    note(f"GetTable VersionId after CreateTable = {v1!r}")
    # stored as sent
    assert t1["StorageDescriptor"]["Columns"] == ti["StorageDescriptor"]["Columns"], t1["StorageDescriptor"]
    assert t1["StorageDescriptor"]["Location"] == "s3://b/t"
    assert t1["Parameters"] == ti["Parameters"], t1["Parameters"]
    assert t1["TableType"] == "EXTERNAL_TABLE"

    ti2 = iceberg_glue_input("t", "s3://b/t/metadata/00001.metadata.json", "s3://b/t")
    ti2["Parameters"]["previous_metadata_location"] = "s3://b/t/metadata/00000.metadata.json"
    g.update_table(DatabaseName="vdb", TableInput=ti2, VersionId=v1, SkipArchive=True)
    t2 = g.get_table(DatabaseName="vdb", Name="t")["Table"]
    v2 = t2["VersionId"]
    assert v2 != v1, (v1, v2)
    assert t2["Parameters"]["metadata_location"].endswith("00001.metadata.json"), t2["Parameters"]
    note(f"VersionId after UpdateTable = {v2!r}")

    # stale VersionId -> ConcurrentModificationException, table unchanged
    ti3 = iceberg_glue_input("t", "s3://b/t/metadata/00002.metadata.json", "s3://b/t")
    try:
        g.update_table(DatabaseName="vdb", TableInput=ti3, VersionId=v1, SkipArchive=True)
    except g.exceptions.ConcurrentModificationException as e:
        meta = e.response["ResponseMetadata"]
        assert meta["HTTPStatusCode"] == 400, meta
        assert e.response["Error"]["Code"] == "ConcurrentModificationException"
        assert meta["HTTPHeaders"].get("x-amzn-errortype", "").startswith("ConcurrentModificationException"), meta
        note(f"stale UpdateTable -> {e.response['Error']}")
    else:
        raise AssertionError("UpdateTable with a stale VersionId succeeded")
    t3 = g.get_table(DatabaseName="vdb", Name="t")["Table"]
    assert t3["VersionId"] == v2 and t3["Parameters"]["metadata_location"].endswith("00001.metadata.json"), t3

    # no VersionId: unconditional update (as in AWS)
    g.update_table(DatabaseName="vdb", TableInput=ti3)
    assert g.get_table(DatabaseName="vdb", Name="t")["Table"]["VersionId"] not in (v1, v2)

    # missing table with a VersionId -> EntityNotFoundException
    try:
        g.update_table(DatabaseName="vdb", TableInput=iceberg_glue_input("nope", "x", "y"), VersionId="1")
    except g.exceptions.EntityNotFoundException:
        pass
    else:
        raise AssertionError("UpdateTable on a missing table succeeded")


def check_glue_race(ctx: dict[str, Any]) -> None:
    """Many clients update from the same VersionId at once: exactly one wins."""
    g = client("glue", ctx["endpoint"])
    g.create_database(DatabaseInput={"Name": "racedb"})
    g.create_table(DatabaseName="racedb", TableInput=iceberg_glue_input("r", "m0", "s3://b/r"))
    for round_ in range(3):
        v = g.get_table(DatabaseName="racedb", Name="r")["Table"]["VersionId"]
        n = 8
        barrier = threading.Barrier(n)
        results: list[str] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            c = client("glue", ctx["endpoint"])
            barrier.wait()
            try:
                c.update_table(
                    DatabaseName="racedb",
                    TableInput=iceberg_glue_input("r", f"m{round_}-{i}", "s3://b/r"),
                    VersionId=v,
                )
                r = "ok"
            except c.exceptions.ConcurrentModificationException:
                r = "conflict"
            except Exception as e:  # noqa: BLE001
                r = f"error {type(e).__name__}: {e}"
            with lock:
                results.append(r)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == ["conflict"] * (n - 1) + ["ok"], results
    note("racing UpdateTable: exactly one of 8 wins, 3 rounds")


def check_glue_regions(ctx: dict[str, Any]) -> None:
    """moto keeps one Glue backend per (account, region): the region must match."""
    east = client("glue", ctx["endpoint"], "us-east-1")
    west = client("glue", ctx["endpoint"], "us-west-2")
    east.create_database(DatabaseInput={"Name": "regiondb"})
    names_west = [d["Name"] for d in west.get_databases()["DatabaseList"]]
    assert "regiondb" not in names_west, names_west
    assert "regiondb" in [d["Name"] for d in east.get_databases()["DatabaseList"]]


def check_s3(ctx: dict[str, Any]) -> None:
    s3 = client("s3", ctx["endpoint"])
    s3.create_bucket(Bucket="plain-bucket")
    body = b"hello \x00 sales-history" * 1000
    s3.put_object(Bucket="plain-bucket", Key="wh/a/b.bin", Body=body)
    got = s3.get_object(Bucket="plain-bucket", Key="wh/a/b.bin")["Body"].read()
    assert got == body
    head = s3.head_object(Bucket="plain-bucket", Key="wh/a/b.bin")
    assert head["ContentLength"] == len(body), head
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="plain-bucket", Prefix="wh/")["Contents"]]
    assert keys == ["wh/a/b.bin"], keys
    s3.delete_object(Bucket="plain-bucket", Key="wh/a/b.bin")
    assert s3.list_objects_v2(Bucket="plain-bucket").get("KeyCount") == 0


def check_record(ctx: dict[str, Any]) -> None:
    with open(ctx["record"], encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh if line.strip()]
    actions = {r["action"] for r in recs}
    want = {
        "glue:CreateDatabase", "glue:CreateTable", "glue:GetTable", "glue:UpdateTable",
        "s3:CreateBucket", "s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject",
    }
    assert want <= actions, sorted(want - actions)
    assert all(set(r) >= {"service", "action"} for r in recs)
    assert not any(r["path"].startswith("/moto-api") for r in recs), "readiness probe was recorded"
    heads = [r for r in recs if r.get("operation") == "HeadObject"]
    assert heads and all(r["action"] == "s3:GetObject" for r in heads), heads
    puts = [r for r in recs if r["action"] == "s3:PutObject" and r.get("bucket") == "plain-bucket"]
    assert puts and puts[0]["key"] == "wh/a/b.bin", puts
    assert {r["service"] for r in recs} <= {"glue", "s3"}, {r["service"] for r in recs}
    note(f"recorded {len(recs)} requests, actions: {sorted(actions)}")


def run_check(*args: str, expect_rc: int = 0) -> dict:
    proc = subprocess.run([sys.executable, CHECK, *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != expect_rc:
        raise AssertionError(
            f"{args}: rc={proc.returncode} (want {expect_rc})\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
        )
    if expect_rc != 0:
        assert proc.stdout == "", proc.stdout
        return {}
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def create_glue_iceberg_table(endpoint: str) -> str:
    sys.path.insert(0, HERE)
    import pyiceberg_check as pc
    from pyiceberg.catalog.glue import GlueCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import MonthTransform
    from pyiceberg.types import DecimalType, DoubleType, ListType, NestedField, StringType, TimestampType

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
    spec = PartitionSpec(PartitionField(source_id=7, field_id=1000, transform=MonthTransform(), name="sold_date_month"))
    client("s3", endpoint).create_bucket(Bucket=BUCKET)
    cat = GlueCatalog("sales_history", **pc.glue_properties(endpoint, endpoint, REGION, f"s3://{BUCKET}/wh"))
    cat.create_namespace(NS)
    location = f"s3://{BUCKET}/wh/{NS}.db/sales_history"
    cat.create_table(
        (NS, "sales_history"),
        location=location,
        schema=schema,
        partition_spec=spec,
        properties={
            "format-version": "2",
            "write.parquet.compression-codec": "zstd",
            "sales_history.embedding-dimension": str(DIM),
        },
    )
    return location


def check_pyiceberg_glue(ctx: dict[str, Any]) -> None:
    ep = ctx["endpoint"]
    location = create_glue_iceberg_table(ep)
    g = client("glue", ep)
    v0 = g.get_table(DatabaseName=NS, Name="sales_history")["Table"]["VersionId"]
    common = [
        "--catalog", "glue", "--glue-endpoint", ep, "--s3-endpoint", ep, "--region", REGION,
        "--warehouse", f"s3://{BUCKET}/wh", "--namespace", NS,
    ]
    empty = run_check("read", *common)
    assert empty["row_count"] == 0 and empty["snapshots"] == [] and empty["location"] == location, empty

    t0 = time.monotonic()
    a1 = run_check("append", *common, "--rows", "30", "--tenant", "t1", "--seed", "7")
    note(f"append 30 rows via Glue: {time.monotonic() - t0:.1f}s")
    assert a1["appended"] == 30 and isinstance(a1["snapshot_id"], int), a1
    assert a1["metadata_location"].startswith(location + "/metadata/"), a1
    v1 = g.get_table(DatabaseName=NS, Name="sales_history")["Table"]["VersionId"]
    assert v1 != v0, (v0, v1)

    out = run_check("read", *common)
    assert out["row_count"] == 30, out["row_count"]
    assert out["table"] == f"{NS}.sales_history"
    assert [f["id"] for f in out["schema"]] == list(range(1, 13))
    assert out["partition_spec"] == [
        {"source_id": 7, "field_id": 1000, "name": "sold_date_month", "transform": "month"}
    ], out["partition_spec"]
    assert out["codecs"] == ["ZSTD"], out["codecs"]
    assert len(out["data_files"]) == 12 and all(p.startswith(location + "/data/") for p in out["data_files"]), out
    assert out["metadata_location"] == a1["metadata_location"]

    # second append: pyiceberg's Glue commit sends the (current) VersionId again
    a2 = run_check("append", *common, "--rows", "5", "--tenant", "t0", "--seed", "1")
    assert a2["appended"] == 5 and a2["snapshot_id"] != a1["snapshot_id"], a2
    out = run_check("read", *common)
    assert out["row_count"] == 35, out["row_count"]
    assert [s["operation"] for s in out["snapshots"]] == ["append", "append"]
    assert out["snapshots"][1]["parent_id"] == a1["snapshot_id"]
    assert len(out["data_files"]) == 17
    assert sum(1 for r in out["rows"] if r["tenant_id"] == "t0") == 5
    old = run_check("read", *common, "--snapshot-id", str(a1["snapshot_id"]), "--no-rows")
    assert old["row_count"] == 30 and "rows" not in old

    # Glue table written by pyiceberg: what the Rust catalog reads back
    gt = g.get_table(DatabaseName=NS, Name="sales_history")["Table"]
    assert gt["Parameters"]["table_type"].upper() == "ICEBERG", gt["Parameters"]
    assert gt["Parameters"]["metadata_location"] == a2["metadata_location"], gt["Parameters"]
    assert gt["Parameters"]["previous_metadata_location"] == a1["metadata_location"], gt["Parameters"]
    assert len(gt["StorageDescriptor"]["Columns"]) == 12, gt["StorageDescriptor"]

    # Stale pyiceberg Glue commit: another writer commits between pyiceberg's GetTable and
    # its UpdateTable (VersionId is then stale) -> the server rejects it and pyiceberg
    # raises CommitFailedException; the Glue table keeps the other writer's version.
    sys.path.insert(0, HERE)
    import pyiceberg_check as pc
    from pyiceberg.catalog.glue import GlueCatalog
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.types import StringType

    cat = GlueCatalog("sales_history", **pc.glue_properties(ep, ep, REGION))
    tbl = cat.load_table((NS, "sales_history"))
    real_update = cat.glue.update_table
    seen: dict[str, Any] = {}

    def racing_update_table(**kw: Any) -> Any:
        cur = g.get_table(DatabaseName=NS, Name="sales_history")["Table"]
        seen["pyiceberg_version_id"] = kw.get("VersionId")
        seen["current_version_id"] = cur["VersionId"]
        other = {k: cur[k] for k in ("Name", "TableType", "Parameters", "StorageDescriptor") if k in cur}
        other["Parameters"] = {**cur["Parameters"], "concurrent-writer": "yes"}
        g.update_table(DatabaseName=NS, TableInput=other, VersionId=cur["VersionId"])
        return real_update(**kw)

    cat.glue.update_table = racing_update_table  # type: ignore[method-assign]
    try:
        tbl.update_schema().add_column("extra", StringType()).commit()
    except CommitFailedException as e:
        assert "concurrent update" in str(e), e
        note(f"stale pyiceberg commit rejected: {e}")
    else:
        raise AssertionError("stale pyiceberg Glue commit was accepted")
    finally:
        cat.glue.update_table = real_update  # type: ignore[method-assign]
    assert seen["pyiceberg_version_id"] == seen["current_version_id"], seen
    gt = g.get_table(DatabaseName=NS, Name="sales_history")["Table"]
    assert gt["Parameters"].get("concurrent-writer") == "yes", gt["Parameters"]
    assert gt["Parameters"]["metadata_location"] == a2["metadata_location"], gt["Parameters"]
    names = [f.name for f in cat.load_table((NS, "sales_history")).schema().fields]
    assert "extra" not in names, names
    # ... and a retry on fresh state commits fine
    a3 = run_check("append", *common, "--rows", "2", "--tenant", "t2", "--seed", "3")
    assert a3["appended"] == 2
    assert run_check("read", *common, "--no-rows")["row_count"] == 37

    # errors: missing table -> rc 1; glue without endpoint -> rc 2
    run_check("read", *common[:-2], "--namespace", "nope", expect_rc=1)
    run_check("read", "--catalog", "glue", "--warehouse", "s3://x/y", "--namespace", NS, expect_rc=2)


def check_stdin_eof(_ctx: dict[str, Any]) -> None:
    la = Launcher()
    rc, took = la.close_stdin_and_wait(10)
    assert rc == 0, rc
    assert la.proc.stdout.read() == "", "launcher wrote more than the port line"
    note(f"exit on stdin EOF: rc={rc} after {took:.2f}s")


def check_sigterm(_ctx: dict[str, Any]) -> None:
    la = Launcher()
    t0 = time.monotonic()
    la.proc.send_signal(signal.SIGTERM)
    rc = la.proc.wait(10)
    assert rc == 0, rc
    note(f"exit on SIGTERM: rc={rc} after {time.monotonic() - t0:.2f}s")
    # the port is free again
    import socket

    s = socket.socket()
    try:
        s.bind(("127.0.0.1", la.port))
    finally:
        s.close()


def main() -> int:
    passed = failed = 0
    tmp = tempfile.mkdtemp(prefix="moto-selftest-")
    record = os.path.join(tmp, "requests.jsonl")
    launcher = None

    def run(name: str, fn: Callable[[dict[str, Any]], None], ctx: dict[str, Any]) -> None:
        nonlocal passed, failed
        t0 = time.monotonic()
        try:
            fn(ctx)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", file=sys.stderr)
            if VERBOSE:
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.2f}s)", file=sys.stderr)

    try:
        try:
            launcher = Launcher("--record", record)
        except Exception as e:  # noqa: BLE001
            print(f"FAIL launcher start: {e}", file=sys.stderr)
            print(f"{passed} passed, 1 failed")
            return 1
        passed += 1
        print(f"ok   launcher start: MOTO_PORT={launcher.port} in {launcher.startup_s:.2f}s", file=sys.stderr)
        ctx = {"endpoint": launcher.endpoint, "record": record}
        run("glue VersionId check", check_glue_version_id, ctx)
        run("glue racing updates", check_glue_race, ctx)
        run("glue per-region backends", check_glue_regions, ctx)
        run("s3 path-style objects", check_s3, ctx)
        run("request recorder", check_record, ctx)
        run("pyiceberg GlueCatalog interop", check_pyiceberg_glue, ctx)
        run("launcher exits on stdin EOF", check_stdin_eof, ctx)
        run("launcher exits on SIGTERM", check_sigterm, ctx)

        rc, _ = launcher.close_stdin_and_wait(10)
        launcher = None
        if rc == 0:
            passed += 1
        else:
            failed += 1
            print(f"FAIL main launcher exit status {rc}", file=sys.stderr)
    finally:
        if launcher is not None:
            launcher.kill()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
