#!/usr/bin/env python3
"""AWS Glue + S3 emulator (moto server) for the sales-history Rust integration tests.

Starts moto's server (moto 5.x, werkzeug WSGI app) on 127.0.0.1, waits until it
answers HTTP, then prints exactly one line to stdout and flushes:

    MOTO_PORT=<port>

Nothing else is ever written to stdout. Diagnostics go to stderr (quiet by
default: a parent that pipes stderr without draining it must not block us).

It runs until
  * its stdin reaches EOF (the parent test process died or closed the pipe),
    unless --ignore-stdin is given, or
  * it receives SIGTERM / SIGINT,
then shuts the server down and exits 0.

Spawn it with stdin = a pipe that the parent keeps open (Rust:
``Stdio::piped()`` and keep the ``ChildStdin``); with stdin = /dev/null it
exits right after start-up unless --ignore-stdin is given.

Glue fidelity patch: moto 5.2.5's UpdateTable ignores ``VersionId``. Real AWS
Glue rejects an UpdateTable whose VersionId is not the table's current version
with ``ConcurrentModificationException`` (the optimistic lock that the Iceberg
Glue catalogs of iceberg-rust, pyiceberg and Java rely on). This launcher wraps
``moto.glue.responses.GlueResponse.update_table`` so that, under one process
wide lock, a request carrying a VersionId that differs from the table's
current version fails with HTTP 400 ``{"__type": "ConcurrentModificationException"}``
and otherwise updates the table (which bumps moto's version id by one).

Options:
    --host H          bind address (default 127.0.0.1)
    --port N          port (default 0 = pick a free one)
    --record FILE     append one JSON line per request to FILE, written when the
                      request arrives (before it is handled):
                        {"service": "glue", "action": "glue:GetTable", "operation": "GetTable",
                         "method": "POST", "path": "/"}
                        {"service": "s3", "action": "s3:GetObject", "operation": "HeadObject",
                         "method": "HEAD", "path": "/bucket/key", "bucket": "bucket", "key": "key"}
                      "action" is the IAM action (HeadObject -> s3:GetObject, ...);
                      "operation" the API operation. S3 must be addressed path-style.
    --ignore-stdin    do not exit on stdin EOF (manual use, background shells)
    --verbose         log every request to stderr (werkzeug access log)

Exit codes: 0 normal shutdown, 1 start-up failure, 2 bad command line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qsl

# Never let anything in this process (moto, botocore) reach for real AWS
# credentials or the EC2 instance metadata service.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])


def log(msg: str) -> None:
    print(f"[moto_server] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- Glue patch

_GLUE_UPDATE_LOCK = threading.RLock()
_PATCHED = False


def patch_glue_update_table_version_check() -> None:
    """Make moto's Glue UpdateTable honour VersionId like real AWS Glue.

    moto 5.2.5 keeps table versions in ``FakeTable.versions`` (dict str -> TableInput)
    with ``FakeTable._current_version`` (int, starts at 1, +1 per ``FakeTable.update``);
    ``GetTable`` returns ``VersionId = str(_current_version)``. ``GlueBackend.update_table``
    never sees the request's VersionId, so the check lives in the response handler,
    which has the parsed request (``self.parameters``) and the backend.
    """
    global _PATCHED
    if _PATCHED:
        return

    from moto.glue.exceptions import GlueClientError
    from moto.glue.responses import GlueResponse

    class ConcurrentModificationException(GlueClientError):
        def __init__(self, message: str):
            super().__init__("ConcurrentModificationException", message)

    original: Callable[..., Any] = GlueResponse.update_table

    def update_table(self):  # type: ignore[no-untyped-def]
        # Serialise every UpdateTable so that check + update is atomic
        # (the werkzeug server handles each request on its own thread).
        with _GLUE_UPDATE_LOCK:
            version_id = self.parameters.get("VersionId")
            if version_id is not None:
                database_name = self.parameters.get("DatabaseName")
                table_input = self.parameters.get("TableInput") or {}
                table_name = table_input.get("Name")
                # Raises EntityNotFoundException for a missing database/table, as AWS does.
                table = self.glue_backend.get_table(database_name, table_name)
                current = str(table._current_version)
                if str(version_id) != current:
                    raise ConcurrentModificationException(
                        f"Update table failed due to concurrent modifications: "
                        f"table {database_name}.{table_name} is at version {current}, "
                        f"request has VersionId {version_id}"
                    )
            return original(self)

    update_table.__wrapped__ = original  # type: ignore[attr-defined]
    update_table.__name__ = "update_table"
    update_table.__doc__ = original.__doc__
    GlueResponse.update_table = update_table  # type: ignore[method-assign]
    _PATCHED = True


# --------------------------------------------------------------------------- S3 Tables patch

_S3TABLES_LOCK = threading.RLock()
_S3TABLES_PATCHED = False


def patch_s3tables_response_shapes() -> None:
    """Make moto 5.2.5's S3 Tables answers parse with the AWS SDKs, and its compare-and-swap atomic.

    moto 5.2.5 answers ``GetTable`` with ``"managedByService": false`` (AWS: a string naming
    the managing service, absent for customer tables) and ``UpdateTableMetadataLocation`` with
    ``"namespace": "ns"`` (AWS: a list of strings). The Rust AWS SDK (aws-sdk-s3tables, used by
    iceberg-catalog-s3tables) refuses both ("expected ValueString", "expected start array").
    The version-token check itself is moto's; it runs here under one lock so that check and
    update are atomic under the threaded server, as the real service's conditional update is.
    """
    global _S3TABLES_PATCHED
    if _S3TABLES_PATCHED:
        return
    from moto.s3tables.responses import S3TablesResponse

    def fixed(original: Callable[..., Any], fix: Callable[[dict], None], locked: bool = False):
        def handler(self):  # type: ignore[no-untyped-def]
            if locked:
                with _S3TABLES_LOCK:
                    status, headers, body = original(self)
            else:
                status, headers, body = original(self)
            if status == 200 and body:
                data = json.loads(body)
                fix(data)
                body = json.dumps(data)
            return status, headers, body

        handler.__wrapped__ = original  # type: ignore[attr-defined]
        handler.__name__ = original.__name__
        return handler

    def get_table(data: dict) -> None:
        if not isinstance(data.get("managedByService"), str):
            data.pop("managedByService", None)

    def update_location(data: dict) -> None:
        ns = data.get("namespace")
        if isinstance(ns, str):
            data["namespace"] = [ns]

    S3TablesResponse.get_table = fixed(S3TablesResponse.get_table, get_table)  # type: ignore[method-assign]
    S3TablesResponse.update_table_metadata_location = fixed(  # type: ignore[method-assign]
        S3TablesResponse.update_table_metadata_location, update_location, locked=True
    )
    _S3TABLES_PATCHED = True


# --------------------------------------------------------------------------- request recorder

_S3_BUCKET_SUBRESOURCES = {
    # GET /bucket?sub -> IAM action / operation
    "location": ("s3:GetBucketLocation", "GetBucketLocation"),
    "uploads": ("s3:ListBucketMultipartUploads", "ListMultipartUploads"),
    "versions": ("s3:ListBucketVersions", "ListObjectVersions"),
    "versioning": ("s3:GetBucketVersioning", "GetBucketVersioning"),
    "policy": ("s3:GetBucketPolicy", "GetBucketPolicy"),
    "acl": ("s3:GetBucketAcl", "GetBucketAcl"),
    "tagging": ("s3:GetBucketTagging", "GetBucketTagging"),
    "lifecycle": ("s3:GetLifecycleConfiguration", "GetBucketLifecycleConfiguration"),
    "encryption": ("s3:GetEncryptionConfiguration", "GetBucketEncryption"),
    "cors": ("s3:GetBucketCORS", "GetBucketCors"),
}


def _s3_action(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    """Map a path-style S3 request to its IAM action and API operation."""
    rest = path.lstrip("/")
    bucket, _, key = rest.partition("/")
    out: dict[str, Any] = {}
    if bucket:
        out["bucket"] = bucket
    if key:
        out["key"] = key

    def res(action: str, op: str) -> dict[str, Any]:
        out["action"] = action
        out["operation"] = op
        return out

    if not bucket:
        if method == "GET":
            return res("s3:ListAllMyBuckets", "ListBuckets")
        return res(f"s3:{method}", method)

    if not key:  # bucket-level
        if method == "GET":
            for sub, (action, op) in _S3_BUCKET_SUBRESOURCES.items():
                if sub in query:
                    return res(action, op)
            return res("s3:ListBucket", "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects")
        if method == "HEAD":
            return res("s3:ListBucket", "HeadBucket")
        if method == "PUT":
            for sub, (action, op) in _S3_BUCKET_SUBRESOURCES.items():
                if sub in query:
                    return res(action.replace(":Get", ":Put"), op.replace("Get", "Put", 1))
            return res("s3:CreateBucket", "CreateBucket")
        if method == "DELETE":
            if "policy" in query:
                return res("s3:DeleteBucketPolicy", "DeleteBucketPolicy")
            return res("s3:DeleteBucket", "DeleteBucket")
        if method == "POST" and "delete" in query:
            return res("s3:DeleteObject", "DeleteObjects")
        return res(f"s3:{method}Bucket", f"{method}Bucket")

    # object-level
    if method == "GET":
        if "uploadId" in query:
            return res("s3:ListMultipartUploadParts", "ListParts")
        if "tagging" in query:
            return res("s3:GetObjectTagging", "GetObjectTagging")
        if "acl" in query:
            return res("s3:GetObjectAcl", "GetObjectAcl")
        return res("s3:GetObject", "GetObject")
    if method == "HEAD":
        return res("s3:GetObject", "HeadObject")
    if method == "PUT":
        if "uploadId" in query:
            op = "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
            return res("s3:PutObject", op)
        if "tagging" in query:
            return res("s3:PutObjectTagging", "PutObjectTagging")
        if "acl" in query:
            return res("s3:PutObjectAcl", "PutObjectAcl")
        return res("s3:PutObject", "CopyObject" if "x-amz-copy-source" in headers else "PutObject")
    if method == "DELETE":
        if "uploadId" in query:
            return res("s3:AbortMultipartUpload", "AbortMultipartUpload")
        return res("s3:DeleteObject", "DeleteObject")
    if method == "POST":
        if "uploads" in query:
            return res("s3:PutObject", "CreateMultipartUpload")
        if "uploadId" in query:
            return res("s3:PutObject", "CompleteMultipartUpload")
    return res(f"s3:{method}Object", f"{method}Object")


def _s3tables_action(method: str, path: str) -> dict[str, Any]:
    """S3 Tables REST operations (method + path) -> IAM action / operation."""
    import re

    # The table bucket ARN in the path holds a "/" (encoded or not): make it one segment.
    path = re.sub(r"arn(?:%3A|:)aws[^/]*?(?:%3A|:)bucket(?:%2F|/)[^/?]+", "ARN", path)
    parts = [p for p in path.split("/") if p]
    head = parts[0] if parts else ""
    op = "unknown"
    if head == "buckets":
        op = {"PUT": "CreateTableBucket", "GET": "ListTableBuckets" if len(parts) == 1 else "GetTableBucket",
              "DELETE": "DeleteTableBucket"}.get(method, "unknown")
    elif head == "namespaces":
        if method == "PUT":
            op = "CreateNamespace"
        elif method == "GET":
            op = "ListNamespaces" if len(parts) <= 2 else "GetNamespace"
        elif method == "DELETE":
            op = "DeleteNamespace"
    elif head == "get-table":
        op = "GetTable"
    elif head == "tables":
        if parts[-1] == "metadata-location":
            op = "UpdateTableMetadataLocation" if method == "PUT" else "GetTableMetadataLocation"
        elif method == "PUT":
            op = "CreateTable"
        elif method == "GET":
            op = "ListTables" if len(parts) <= 3 else "GetTable"
        elif method == "DELETE":
            op = "DeleteTable"
    return {"action": f"s3tables:{op}", "operation": op}


def describe_request(environ: dict[str, Any]) -> dict[str, Any]:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "") or "/"
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    target = environ.get("HTTP_X_AMZ_TARGET")
    auth = environ.get("HTTP_AUTHORIZATION", "")

    service = None
    if auth.startswith("AWS4-HMAC-SHA256"):
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
            service = scope.split("/")[3].lower()
        except IndexError:
            service = None
    if service is None and target:
        prefix = target.split(".", 1)[0]
        service = {"AWSGlue": "glue"}.get(prefix, prefix.lower())
    if service is None and path.startswith("/moto-api"):
        service = "moto-api"
    if service is None:
        service = "s3"  # unsigned path-style requests are S3 (as moto assumes)

    rec: dict[str, Any] = {"service": service}
    if service == "s3":
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        rec.update(_s3_action(method, path, query, headers))
    elif service == "s3tables":
        rec.update(_s3tables_action(method, path))
    elif target:
        op = target.split(".", 1)[-1]
        rec["action"] = f"{service}:{op}"
        rec["operation"] = op
    elif "Action" in query:
        rec["action"] = f"{service}:{query['Action']}"
        rec["operation"] = query["Action"]
    else:
        rec["action"] = f"{service}:unknown"
        rec["operation"] = None
    rec["method"] = method
    rec["path"] = path
    # key order: service, action, operation, ... (bucket/key come from _s3_action)
    ordered = {k: rec[k] for k in ("service", "action", "operation", "method", "path") if k in rec}
    ordered.update({k: v for k, v in rec.items() if k not in ordered})
    return ordered


class RecordingApp:
    """WSGI middleware: append one JSON line per request to a file, then dispatch."""

    def __init__(self, app: Callable[..., Any], path: str):
        self.app = app
        self.enabled = False  # switched on once the launcher's own readiness probe is done
        self.lock = threading.Lock()
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the server

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if not self.enabled:
            return self.app(environ, start_response)
        try:
            rec = describe_request(environ)
        except Exception as e:  # noqa: BLE001 - recording must never break a request
            rec = {"service": "unknown", "action": "unknown", "error": f"{type(e).__name__}: {e}"}
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            self.fh.write(line)
            self.fh.flush()
        return self.app(environ, start_response)

    def close(self) -> None:
        with self.lock:
            try:
                self.fh.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- server


def wait_until_answers(host: str, port: int, timeout: float = 30.0) -> None:
    """Poll until the server answers an HTTP request (http.client never uses *_PROXY)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(connect_host, port, timeout=5)
            try:
                conn.request("GET", "/moto-api/data.json")
                resp = conn.getresponse()
                resp.read()
                if resp.status < 500:
                    return
                last = RuntimeError(f"HTTP {resp.status}")
            finally:
                conn.close()
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"moto server on {connect_host}:{port} did not answer within {timeout}s: {last}")


def warm_up(app: Any) -> None:
    """Build the Glue and S3 Flask apps now so the first test request is not slow."""
    for service in ("glue", "s3"):
        try:
            app.get_application({
                "HTTP_HOST": "127.0.0.1",
                "PATH_INFO": "/",
                "REQUEST_METHOD": "GET",
                "HTTP_AUTHORIZATION": (
                    f"AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/{service}/aws4_request, "
                    "SignedHeaders=host, Signature=0"
                ),
            })
        except Exception as e:  # noqa: BLE001 - only an optimisation
            log(f"warm-up of {service} failed (ignored): {type(e).__name__}: {e}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: stderr, exit 2
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="moto_server.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    p.add_argument("--record", metavar="FILE", default=None, help="append one JSON line per request to FILE")
    p.add_argument("--ignore-stdin", action="store_true", help="do not exit when stdin reaches EOF")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    stop = threading.Event()
    reason: list[str] = []

    def request_stop(why: str) -> None:
        if not reason:
            reason.append(why)
        stop.set()

    signal.signal(signal.SIGTERM, lambda *_: request_stop("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: request_stop("SIGINT"))

    try:
        import logging

        from werkzeug.serving import make_server

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        patch_glue_update_table_version_check()
        patch_s3tables_response_shapes()

        if not args.verbose:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)

            class Handler(MotoRequestHandler):
                def log_request(self, *a: Any, **k: Any) -> None:  # no access log
                    pass

        else:
            Handler = MotoRequestHandler  # type: ignore[misc,assignment]

        dispatcher = DomainDispatcherApplication(create_backend_app)
        warm_up(dispatcher)
        app: Any = dispatcher
        recorder: RecordingApp | None = None
        if args.record:
            recorder = RecordingApp(dispatcher, args.record)
            app = recorder

        server = make_server(args.host, args.port, app, threaded=True, request_handler=Handler)
        port = server.server_address[1]
        serve_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="moto-serve", daemon=True)
        serve_thread.start()
        wait_until_answers(args.host, port)
        if recorder is not None:
            recorder.enabled = True
    except Exception as e:  # noqa: BLE001
        log(f"start-up failed: {type(e).__name__}: {e}")
        return 1

    if not args.ignore_stdin:
        def watch_stdin() -> None:
            try:
                fd = sys.stdin.fileno()
                while os.read(fd, 65536):
                    pass
            except (OSError, ValueError):
                pass
            request_stop("stdin EOF")

        if sys.stdin is None:
            request_stop("no stdin")
        else:
            threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    try:
        sys.stdout.write(f"MOTO_PORT={port}\n")
        sys.stdout.flush()
    except OSError as e:  # parent already gone
        request_stop(f"stdout: {e}")
    if args.verbose:
        log(f"listening on {args.host}:{port} (ready in {time.monotonic() - t0:.2f}s)")

    while not stop.wait(0.5):
        pass

    if args.verbose:
        log(f"stopping ({reason[0] if reason else 'stop'})")
    # shutdown() waits for serve_forever's loop; bound it so we always exit.
    closer = threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True)
    closer.start()
    closer.join(5.0)
    if recorder is not None:
        recorder.close()
    try:
        sys.stderr.flush()
    except OSError:
        pass
    # Request threads are daemons; exit without waiting for in-flight ones.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
