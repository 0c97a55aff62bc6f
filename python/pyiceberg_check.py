#!/usr/bin/env python3
"""PyIceberg interop peer for the sales-history Rust integration tests.

The Rust crate writes an Iceberg table through iceberg-rust's SQL catalog on
SQLite. This script opens the same catalog with PyIceberg's ``SqlCatalog`` so
that a second, independent implementation reads (and appends to) the table.

Layout shared with the Rust side:
    catalog      {warehouse}/catalog.db          (SQLite, JDBC-catalog tables)
    catalog name sales_history                   (iceberg_tables.catalog_name)
    namespace    pricing_intelligence_{stage}
    table        sales_history
    location     {warehouse}/pricing_intelligence_{stage}.db/sales_history

Subcommands (each prints exactly one JSON object on stdout; errors go to
stderr with a non-zero exit status):

    read   --warehouse DIR --namespace NS [--table T] [--snapshot-id N] [--no-rows]
    create --warehouse DIR --namespace NS --codec snappy|zstd|unset [--sort-order]
           [--rows N --tenant T]   (the table as Athena DDL makes it: every column
           optional, optional list element, month(sold_date) as sold_date_month)
    append --warehouse DIR --namespace NS --rows N --tenant T[,T...] [--seed S] [--table T]
           [--add-files [--time-unit us|ms] [--page-index]]
                           (pyarrow-written files, local warehouse only)

AWS Glue mode (both subcommands; for the moto Glue + S3 emulator,
python/moto_server.py): add

    --catalog glue --glue-endpoint URL [--s3-endpoint URL] [--region R]

The table {namespace}.{table} is then loaded through PyIceberg's GlueCatalog
and its files are read/written through PyArrowFileIO on S3 (path-style, dummy
credentials ``testing``; --s3-endpoint defaults to --glue-endpoint, --region to
us-east-1). --warehouse is then an ``s3://bucket/prefix`` URI and only
informational. The instance metadata service is never contacted
(AWS_EC2_METADATA_DISABLED=true, explicit credentials and region).

Exit codes: 0 ok, 1 error (message on stderr), 2 bad command line.
Set PYICEBERG_CHECK_DEBUG=1 for a traceback on errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import sys
import traceback
import uuid
from decimal import Decimal
from typing import Any

CATALOG_NAME = "sales_history"
DEFAULT_TABLE = "sales_history"
EMBEDDING_DIM_PROPERTY = "sales_history.embedding-dimension"
DEFAULT_EMBEDDING_DIM = 1024

ROW_COLUMNS = (
    "product_id",
    "tenant_id",
    "category",
    "brand",
    "condition",
    "sold_price",
    "sold_date",
    "season",
    "image_s3_key",
    "description",
    "source",
)


class CheckError(Exception):
    """An expected failure with a user-facing message."""


# --------------------------------------------------------------------------- catalog


def open_catalog(warehouse: str, catalog_name: str = CATALOG_NAME):
    from pyiceberg.catalog.sql import SqlCatalog

    wh = os.path.abspath(warehouse)
    if not os.path.isdir(wh):
        raise CheckError(f"warehouse directory does not exist: {wh}")
    db = os.path.join(wh, "catalog.db")
    if not os.path.isfile(db):
        # SqlCatalog would silently create an empty catalog here; refuse instead.
        raise CheckError(f"catalog database does not exist: {db}")
    return SqlCatalog(catalog_name, uri=f"sqlite:///{db}", warehouse=f"file://{wh}")


DUMMY_AWS_KEY = "testing"


def glue_properties(
    glue_endpoint: str, s3_endpoint: str | None, region: str, warehouse: str | None = None
) -> dict[str, str]:
    """GlueCatalog + PyArrowFileIO properties for an emulated (moto) Glue + S3.

    Property names as in pyiceberg 0.12 (pyiceberg/catalog/glue.py, pyiceberg/io/__init__.py).
    PyArrow's S3FileSystem addresses buckets path-style unless force_virtual_addressing is
    set, which is what a 127.0.0.1 endpoint needs. ``s3.region`` must be set: without it
    PyArrowFileIO asks real S3 for the bucket's region (resolve_s3_region).
    """
    props = {
        "type": "glue",
        "glue.endpoint": glue_endpoint,
        "glue.region": region,
        "glue.access-key-id": DUMMY_AWS_KEY,
        "glue.secret-access-key": DUMMY_AWS_KEY,
        "s3.endpoint": s3_endpoint or glue_endpoint,
        "s3.region": region,
        "s3.access-key-id": DUMMY_AWS_KEY,
        "s3.secret-access-key": DUMMY_AWS_KEY,
        "s3.force-virtual-addressing": "false",
        "s3.connect-timeout": "10",
        "s3.request-timeout": "60",
        "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
    }
    if warehouse:
        props["warehouse"] = warehouse
    return props


def disable_aws_metadata() -> None:
    """Keep botocore and the AWS SDK inside PyArrow away from 169.254.169.254 and real creds."""
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", DUMMY_AWS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", DUMMY_AWS_KEY)


def open_glue_catalog(args: argparse.Namespace):
    from pyiceberg.catalog.glue import GlueCatalog

    disable_aws_metadata()
    return GlueCatalog(
        args.catalog_name,
        **glue_properties(args.glue_endpoint, args.s3_endpoint, args.region, args.warehouse),
    )


def load_table(args: argparse.Namespace):
    from pyiceberg.exceptions import NoSuchTableError

    if getattr(args, "metadata_location", None):
        # A catalog pyiceberg has no client for here (S3 Tables on the emulator): read the
        # table straight from the metadata file the catalog reports.
        from pyiceberg.table import StaticTable

        disable_aws_metadata()
        props = glue_properties(args.glue_endpoint or args.s3_endpoint, args.s3_endpoint, args.region or "us-east-1")
        props = {k: v for k, v in props.items() if k.startswith("s3.") or k == "py-io-impl"}
        return StaticTable.from_metadata(args.metadata_location, properties=props)

    ident = (args.namespace, args.table)
    if args.catalog == "glue":
        catalog = open_glue_catalog(args)
        try:
            return catalog.load_table(ident)
        except NoSuchTableError as e:
            raise CheckError(
                f"table {args.namespace}.{args.table} not found in Glue catalog at "
                f"{args.glue_endpoint} (region {args.region}): {e}"
            ) from e

    catalog = open_catalog(args.warehouse, args.catalog_name)
    try:
        return catalog.load_table(ident)
    except NoSuchTableError as e:
        raise CheckError(
            f"table {args.namespace}.{args.table} not found in catalog "
            f"{args.catalog_name!r} at {os.path.abspath(args.warehouse)}/catalog.db: {e}"
        ) from e


# --------------------------------------------------------------------------- helpers


def local_path(location: str) -> str:
    """Map an Iceberg file location to a local path.

    iceberg-rust may write ``file:/abs``, ``file:///abs`` or a bare ``/abs``;
    PyIceberg writes ``file:///abs``.
    """
    if location.startswith("file://"):
        rest = location[len("file://"):]
        # file://localhost/abs or file:///abs
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        return rest
    if location.startswith("file:"):
        return location[len("file:"):]
    if "://" in location:
        raise CheckError(f"not a local file location: {location}")
    return location


def open_parquet(table, location: str):
    """Open a data file as pyarrow.parquet.ParquetFile (table io first, then local path)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(table.io.new_input(location).open())
    except Exception as io_err:  # noqa: BLE001 - fall back to a plain local path
        if "://" in location and not location.startswith("file:"):
            # Object store (s3://...): there is no local path to fall back to.
            raise CheckError(f"cannot open data file {location} via table io: {io_err}") from io_err
        path = local_path(location)
        try:
            return pq.ParquetFile(path)
        except Exception as path_err:  # noqa: BLE001
            raise CheckError(
                f"cannot open data file {location}: via table io: {io_err}; as {path}: {path_err}"
            ) from path_err


def parquet_codecs(table, locations: list[str]) -> list[str]:
    codecs: set[str] = set()
    for loc in locations:
        pf = open_parquet(table, loc)
        md = pf.metadata
        for rg in range(md.num_row_groups):
            group = md.row_group(rg)
            for col in range(group.num_columns):
                codecs.add(str(group.column(col).compression))
    return sorted(codecs)


def json_float(x: float) -> Any:
    """JSON has no NaN/Infinity; emit those as strings so the output stays valid JSON."""
    if math.isfinite(x):
        return x
    return str(x)


def fmt_decimal(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, Decimal):
        v = Decimal(str(v))
    return format(v.quantize(Decimal("0.01")), "f")


def fmt_timestamp(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(timespec="microseconds")
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day).isoformat(timespec="microseconds")
    return str(v)


def schema_json(schema) -> list[dict[str, Any]]:
    from pyiceberg.types import ListType, MapType

    out = []
    for f in schema.fields:
        item: dict[str, Any] = {
            "id": f.field_id,
            "name": f.name,
            "type": str(f.field_type),
            "required": bool(f.required),
        }
        t = f.field_type
        if isinstance(t, ListType):
            item["element_id"] = t.element_id
            item["element_required"] = bool(t.element_required)
        elif isinstance(t, MapType):
            item["key_id"] = t.key_id
            item["value_id"] = t.value_id
            item["value_required"] = bool(t.value_required)
        out.append(item)
    return out


def snapshot_json(snap) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    operation = None
    if snap.summary is not None:
        op = snap.summary.operation
        operation = getattr(op, "value", op)
        summary = {k: str(v) for k, v in snap.summary.additional_properties.items()}
    return {
        "snapshot_id": snap.snapshot_id,
        "parent_id": snap.parent_snapshot_id,
        "sequence_number": snap.sequence_number,
        "timestamp_ms": snap.timestamp_ms,
        "operation": operation,
        "summary": summary,
        "manifest_list": snap.manifest_list,
    }


def rows_json(arrow_table) -> list[dict[str, Any]]:
    names = set(arrow_table.column_names)
    rows = []
    for rec in arrow_table.to_pylist():
        row: dict[str, Any] = {}
        for col in ROW_COLUMNS:
            v = rec.get(col) if col in names else None
            if col == "sold_price":
                v = fmt_decimal(v)
            elif col == "sold_date":
                v = fmt_timestamp(v)
            row[col] = v
        emb = rec.get("embedding") if "embedding" in names else None
        if emb is None:
            row["embedding_len"] = None
            row["embedding_sum"] = None
        else:
            row["embedding_len"] = len(emb)
            row["embedding_sum"] = json_float(math.fsum(float(x) for x in emb if x is not None))
        rows.append(row)

    def key(r: dict[str, Any]):
        return (r["tenant_id"] or "", r["product_id"] or "", r["sold_date"] or "")

    rows.sort(key=key)
    return rows


# --------------------------------------------------------------------------- read


def cmd_read(args: argparse.Namespace) -> dict[str, Any]:
    table = load_table(args)
    md = table.metadata

    snapshot_id = args.snapshot_id
    if snapshot_id is not None and table.snapshot_by_id(snapshot_id) is None:
        known = [s.snapshot_id for s in md.snapshots]
        raise CheckError(f"snapshot {snapshot_id} not found; table has {known}")
    if snapshot_id is None and table.current_snapshot() is not None:
        snapshot_id = table.current_snapshot().snapshot_id

    row_filter = args.filter if args.filter else "True"
    scan = (
        table.scan(snapshot_id=snapshot_id, row_filter=row_filter)
        if snapshot_id is not None
        else table.scan(row_filter=row_filter)
    )
    tasks = list(scan.plan_files()) if snapshot_id is not None else []
    data_files = [t.file.file_path for t in tasks]
    delete_files = sorted({d.file_path for t in tasks for d in t.delete_files})

    out: dict[str, Any] = {
        "table": f"{args.namespace}.{args.table}",
        "location": md.location,
        "metadata_location": table.metadata_location,
        "format_version": md.format_version,
        "current_snapshot_id": md.current_snapshot_id,
        "read_snapshot_id": snapshot_id,
        "schema": schema_json(table.schema()),
        "partition_spec": [
            {
                "source_id": pf.source_id,
                "field_id": pf.field_id,
                "name": pf.name,
                "transform": str(pf.transform),
            }
            for pf in table.spec().fields
        ],
        "properties": dict(md.properties),
        "snapshots": [snapshot_json(s) for s in md.snapshots],
        "data_files": data_files,
        "delete_files": delete_files,
        "data_file_record_counts": [t.file.record_count for t in tasks],
        "data_file_spec_ids": [t.file.spec_id for t in tasks],
        "spec_ids": sorted(s.spec_id for s in md.partition_specs),
        "default_spec_id": md.default_spec_id,
        "codecs": parquet_codecs(table, data_files + delete_files),
        "file_codecs": {f: parquet_codecs(table, [f]) for f in data_files},
    }

    if snapshot_id is None:
        out["row_count"] = 0
        if not args.no_rows:
            out["rows"] = []
        return out

    if args.no_rows:
        # Only the row count is needed: read one small column.
        first = table.schema().fields[0].name
        narrow = table.scan(
            snapshot_id=snapshot_id, row_filter=row_filter, selected_fields=(first,)
        ).to_arrow()
        out["row_count"] = narrow.num_rows
    else:
        arrow_table = scan.to_arrow()
        out["row_count"] = arrow_table.num_rows
        out["rows"] = rows_json(arrow_table)
    return out


# --------------------------------------------------------------------------- append


def build_rows(arrow_schema, n: int, tenant: str, seed: int, dim: int):
    import pyarrow as pa

    rng = random.Random(f"{seed}:{tenant}")
    categories = ["dresses", "tops", "jeans", "shoes", "bags", "jackets"]
    brands = ["Acme", "Globex", "Initech", None]
    conditions = ["new", "like_new", "good", "fair"]
    # The table's contract: season is the quarter of sold_date.
    seasons = {m: f"Q{(m - 1) // 3 + 1}" for m in range(1, 13)}

    # `tenant` may name several, comma-separated: row i gets the (i mod k)-th, so every file
    # of the append mixes tenants in no particular order.
    tenants = [t for t in tenant.split(",") if t] or [tenant]
    cols: dict[str, list[Any]] = {name: [] for name in arrow_schema.names}
    for i in range(n):
        tenant = tenants[i % len(tenants)]
        month = (i % 12) + 1
        sold = dt.datetime(
            2024, month, rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
            rng.randint(0, 59), rng.randint(0, 999_999),
        )
        cents = rng.randint(100, 999_999)  # 1.00 .. 9999.99
        product = f"py-{tenant}-s{seed}-{i:06d}"
        values = {
            "product_id": product,
            "tenant_id": tenant,
            "category": rng.choice(categories),
            "brand": rng.choice(brands),
            "condition": rng.choice(conditions),
            "sold_price": Decimal(cents).scaleb(-2),
            "sold_date": sold,
            "season": seasons[month],
            "image_s3_key": f"images/{tenant}/{product}.jpg" if i % 5 else None,
            "embedding": [round(rng.uniform(-1.0, 1.0), 6) for _ in range(dim)] if i % 7 != 6 else None,
            "description": f"pyiceberg row {i} for {tenant}" if i % 3 else None,
            "source": "pyiceberg",
        }
        for name in arrow_schema.names:
            cols[name].append(values.get(name))

    arrays = []
    for field in arrow_schema:
        data = cols[field.name]
        if not field.nullable and any(v is None for v in data):
            raise CheckError(
                f"append: column {field.name!r} is required but this script has no generator for it"
            )
        arrays.append(pa.array(data, type=field.type))
    return pa.Table.from_arrays(arrays, schema=arrow_schema)


def cmd_append(args: argparse.Namespace) -> dict[str, Any]:
    if args.rows < 0:
        raise CheckError("--rows must be >= 0")
    table = load_table(args)
    raw_dim = table.properties.get(EMBEDDING_DIM_PROPERTY, str(DEFAULT_EMBEDDING_DIM))
    try:
        dim = int(raw_dim)
    except ValueError as e:
        raise CheckError(f"table property {EMBEDDING_DIM_PROPERTY}={raw_dim!r} is not an integer") from e
    if dim <= 0:
        raise CheckError(f"table property {EMBEDDING_DIM_PROPERTY}={dim} must be positive")

    arrow_schema = table.schema().as_arrow()
    data = build_rows(arrow_schema, args.rows, args.tenant, args.seed, dim)
    files = []
    if args.add_files:
        files = add_plain_files(table, data, args.seed, args.time_unit, args.page_index)
    else:
        table.append(data)
    snap = table.current_snapshot()
    return {
        "appended": data.num_rows,
        "files_added": len(files),
        "snapshot_id": snap.snapshot_id if snap is not None else None,
        "embedding_dimension": dim,
        "metadata_location": table.metadata_location,
    }


def add_plain_files(table, data, seed: int, time_unit: str = "us", page_index: bool = False) -> list[str]:
    """Writes `data` with pyarrow itself, one file per month, without dictionary pages or (by
    default) a page index, the embedding BYTE_STREAM_SPLIT in pages of ~64 KiB (what an engine
    tuned for floats writes), `sold_date` in `time_unit` (pyiceberg takes milliseconds too and
    readers upcast them), and adds the files with `add_files` (no field ids: the name
    mapping)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def plain(t):
        if pa.types.is_list(t):
            v = t.value_field
            return pa.list_(pa.field(v.name, plain(v.type), v.nullable))
        return t

    if not table.location().startswith("file://") and not table.location().startswith("/"):
        raise CheckError(f"--add-files writes local files only; the table is at {table.location()}")
    def unit(f):
        if pa.types.is_timestamp(f.type):
            return pa.timestamp(time_unit, tz=f.type.tz)
        return plain(f.type)

    schema = pa.schema([pa.field(f.name, unit(f), f.nullable) for f in data.schema])
    for i, f in enumerate(data.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit != time_unit:
            # The generated values have microseconds: truncated to the unit.
            data = data.set_column(i, f.name, pc.cast(data.column(i), schema.field(i).type, safe=False))
    data = data.cast(schema)
    months = pc.strftime(data.column("sold_date"), format="%Y-%m")
    paths = []
    for month in sorted(set(months.to_pylist())):
        part = data.filter(pc.equal(months, month))
        path = f"{table.location()}/data/added-s{seed}-{month}-{uuid.uuid4().hex[:8]}.parquet"
        local = path.removeprefix("file://")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        pq.write_table(
            part,
            local,
            compression="snappy",
            use_dictionary=False,
            column_encoding={"embedding.list.element": "BYTE_STREAM_SPLIT"},
            data_page_size=64 * 1024,
            write_page_index=page_index,
        )
        # pyarrow ignores a column path it does not know: check the encoding took.
        meta = pq.ParquetFile(local).metadata
        encodings = [
            meta.row_group(0).column(i).encodings
            for i in range(meta.num_columns)
            if meta.row_group(0).column(i).path_in_schema == "embedding.list.element"
        ]
        if not encodings or "BYTE_STREAM_SPLIT" not in encodings[0]:
            raise CheckError(f"{local}: the embedding is not BYTE_STREAM_SPLIT: {encodings}")
        paths.append(path)
    table.add_files(paths)
    return paths


# --------------------------------------------------------------------------- create


def athena_schema():
    """The seed's columns as Athena DDL creates them: every field optional, optional element."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        DecimalType, DoubleType, ListType, NestedField, StringType, TimestampType,
    )

    types = {
        "sold_price": DecimalType(10, 2),
        "sold_date": TimestampType(),
        "embedding": ListType(element_id=13, element_type=DoubleType(), element_required=False),
    }
    names = list(ROW_COLUMNS)
    names.insert(names.index("description"), "embedding")
    return Schema(
        *[
            NestedField(i + 1, name, types.get(name, StringType()), required=False)
            for i, name in enumerate(names)
        ]
    )


def cmd_create(args: argparse.Namespace) -> dict[str, Any]:
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.table.sorting import SortField, SortOrder
    from pyiceberg.transforms import IdentityTransform, MonthTransform

    if args.catalog == "glue":
        catalog = open_glue_catalog(args)
    else:
        wh = os.path.abspath(args.warehouse)
        os.makedirs(wh, exist_ok=True)
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = SqlCatalog(
            args.catalog_name, uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}"
        )
    catalog.create_namespace_if_not_exists(args.namespace)
    spec = PartitionSpec(
        PartitionField(source_id=7, field_id=1000, transform=MonthTransform(), name="sold_date_month")
    )
    props = {"athena.fixture": "made by pyiceberg_check.py create"}
    if args.codec != "unset":
        props["write.parquet.compression-codec"] = args.codec
    sort = SortOrder(SortField(source_id=2, transform=IdentityTransform())) if args.sort_order else None
    kwargs = {"sort_order": sort} if sort is not None else {}
    table = catalog.create_table(
        (args.namespace, args.table), schema=athena_schema(), partition_spec=spec,
        properties=props, **kwargs,
    )
    if args.codec == "unset" and "write.parquet.compression-codec" in table.properties:
        # pyiceberg records its own default at creation; an Athena table may have none.
        with table.transaction() as tx:
            tx.remove_properties("write.parquet.compression-codec")
        table = catalog.load_table((args.namespace, args.table))
    data_files: list[str] = []
    if args.rows:
        data = build_rows(table.schema().as_arrow(), args.rows, args.tenant, args.seed, args.dim)
        table.append(data)
        data_files = [t.file.file_path for t in table.scan().plan_files()]
    return {
        "table": f"{args.namespace}.{args.table}",
        "location": table.metadata.location,
        "properties": dict(table.properties),
        "sort_order_fields": len(table.sort_order().fields),
        "data_files": data_files,
    }


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # keep usage errors on stderr with exit 2
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyiceberg_check.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp):
        sp.add_argument(
            "--warehouse",
            required=True,
            help="warehouse directory (holds catalog.db); with --catalog glue an s3://bucket/prefix URI "
            "(informational only)",
        )
        sp.add_argument("--namespace", required=True, help="e.g. pricing_intelligence_dev")
        sp.add_argument("--table", default=DEFAULT_TABLE)
        sp.add_argument("--catalog-name", default=CATALOG_NAME, help=argparse.SUPPRESS)
        sp.add_argument(
            "--catalog",
            choices=("sql", "glue"),
            default="sql",
            help="sql: SqlCatalog on {warehouse}/catalog.db (default); glue: AWS Glue (emulated)",
        )
        sp.add_argument("--glue-endpoint", default=None, help="Glue endpoint URL (required with --catalog glue)")
        sp.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: --glue-endpoint)")
        sp.add_argument(
            "--region",
            default=None,
            help="AWS region for Glue and S3 (default: $AWS_REGION, $AWS_DEFAULT_REGION or us-east-1)",
        )

    r = sub.add_parser("read", help="print table metadata, files, codecs and rows as JSON")
    common(r)
    r.add_argument("--snapshot-id", type=int, default=None)
    r.add_argument("--no-rows", action="store_true", help="omit the rows list")
    r.add_argument("--filter", default=None, help="a pyiceberg row filter, e.g. \"tenant_id == 'a'\"")
    r.add_argument(
        "--metadata-location",
        default=None,
        help="read this metadata file with StaticTable (S3 Tables); needs --catalog glue's --s3-endpoint",
    )
    r.set_defaults(func=cmd_read)

    a = sub.add_parser("append", help="append N deterministic rows with pyiceberg")
    common(a)
    a.add_argument("--rows", type=int, required=True)
    a.add_argument("--tenant", required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument(
        "--add-files",
        action="store_true",
        help="write the rows with pyarrow (no dictionary, no page index, one file per month) and add_files them",
    )
    a.add_argument(
        "--time-unit",
        choices=("us", "ms"),
        default="us",
        help="with --add-files: the unit sold_date is stored in",
    )
    a.add_argument("--page-index", action="store_true", help="with --add-files: write a page index")
    a.set_defaults(func=cmd_append)

    c = sub.add_parser("create", help="create the table as Athena DDL would, optionally with rows")
    common(c)
    c.add_argument("--codec", choices=("snappy", "zstd", "unset"), required=True)
    c.add_argument("--sort-order", action="store_true", help="declare the sort order tenant_id")
    c.add_argument("--rows", type=int, default=0)
    c.add_argument("--tenant", default="athena")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--dim", type=int, default=DEFAULT_EMBEDDING_DIM, help="embedding length of the rows")
    c.set_defaults(func=cmd_create)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.catalog == "glue":
        if not args.glue_endpoint:
            parser.error("--catalog glue requires --glue-endpoint URL")
        disable_aws_metadata()
        if not args.region:
            args.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    else:
        for opt in ("glue_endpoint", "s3_endpoint", "region"):
            if getattr(args, opt) is not None:
                parser.error(f"--{opt.replace('_', '-')} needs --catalog glue")
    try:
        result = args.func(args)
        text = json.dumps(result, allow_nan=False, default=str)
    except CheckError as e:
        print(f"pyiceberg_check {args.command}: error: {e}", file=sys.stderr)
        if os.environ.get("PYICEBERG_CHECK_DEBUG"):
            traceback.print_exc()
        return 1
    except Exception as e:  # noqa: BLE001 - any failure must be a clean non-zero exit
        print(f"pyiceberg_check {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
