#!/usr/bin/env python3
"""Self-test for python/fault_proxy.py (in front of python/moto_server.py).

Starts ``moto_server.py`` and ``fault_proxy.py --upstream <moto>`` as
subprocesses (stdin = pipe, kept open), then, with boto3 pointed at the proxy
(path-style, us-east-1, dummy keys, ``retries={"total_max_attempts": 1}`` so that
injected errors are visible) checks:

  * plain put / get / head / list / delete pass through; HEAD of a missing key
    is a 404 without body; the control API never reaches moto;
  * GET /__faults__ counters and log match the requests made; bad rules -> 400;
  * a rule failing the 2nd PUT matching ``\\.parquet$`` with 500 fails exactly
    that one (InternalError), 503 -> SlowDown, 403 on HEAD;
  * ``drop`` -> connection error, nothing stored; ``drop_response`` on a PUT ->
    connection error, but the object exists afterwards;
  * ``delay`` delays; skip / times = -1; probability + seed is deterministic;
  * a 6 MB put_object, a multipart ``upload_fileobj`` (12 MB) and a raw
    ``Transfer-Encoding: chunked`` PUT round-trip byte for byte; a fault on
    one UploadPart fails the whole upload;
  * one keep-alive connection survives HEAD, 404, injected errors and chunked
    bodies; concurrent requests are all counted;
  * unreachable upstream -> 502; the proxy exits 0 on stdin EOF and on SIGTERM.

Prints ``N passed, N failed`` and exits non-zero on any failure.

    PY="$(bash scripts/venv.sh | tail -n1)"; "$PY" python/fault_proxy_selftest.py [-v]
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
MOTO = os.path.join(HERE, "moto_server.py")
PROXY = os.path.join(HERE, "fault_proxy.py")
REGION = "us-east-1"
KEY = "testing"
BUCKET = "fault-proxy-selftest"
# moto does not verify signatures; raw http.client requests only need to look like S3.
FAKE_AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, "
             "SignedHeaders=host, Signature=0")

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_ACCESS_KEY_ID"] = KEY
os.environ["AWS_SECRET_ACCESS_KEY"] = KEY
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

VERBOSE = "-v" in sys.argv


def note(msg: str) -> None:
    if VERBOSE:
        print(f"  {msg}", file=sys.stderr, flush=True)


class Child:
    """A launcher child process with stdin = pipe (kept open) that prints NAME=<port>."""

    def __init__(self, script: str, marker: str, *extra: str, timeout: float = 60):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, script, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._readline(timeout)
        self.startup_s = time.monotonic() - t0
        if not line.startswith(marker + "="):
            self.kill()
            raise AssertionError(f"{os.path.basename(script)} printed {line!r}, "
                                 f"stderr: {self.proc.stderr.read()!r}")
        self.port = int(line.strip().split("=", 1)[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # Drain stderr so a chatty child can never block on a full pipe.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def _readline(self, timeout: float) -> str:
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not out:
            self.kill()
            raise AssertionError(f"child printed nothing within {timeout}s")
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


def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
        # total_max_attempts=1: no retry at all. (botocore's "max_attempts" counts
        # *retries*: {"max_attempts": 1} is 2 attempts and hides a one-shot fault.)
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"},
                      connect_timeout=5, read_timeout=30),
    )


def ctl(port: int, method: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        conn.request(method, "/__faults__", body=data,
                     headers={"Content-Type": "application/json"} if data is not None else {})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def set_rules(ctx: dict[str, Any], *rules: dict[str, Any]) -> None:
    status, body = ctl(ctx["pport"], "POST", {"rules": list(rules)})
    assert status == 200, (status, body)


def reset(ctx: dict[str, Any]) -> None:
    status, _ = ctl(ctx["pport"], "DELETE")
    assert status == 200, status


def state(ctx: dict[str, Any]) -> dict[str, Any]:
    status, body = ctl(ctx["pport"], "GET")
    assert status == 200, status
    return body


def client_error_code(e: Exception) -> tuple[str, int]:
    r = getattr(e, "response", None) or {}
    return r.get("Error", {}).get("Code", ""), r.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def expect_client_error(fn: Callable[[], Any], code: str, status: int) -> None:
    from botocore.exceptions import ClientError

    try:
        fn()
    except ClientError as e:
        got = client_error_code(e)
        assert got == (code, status), f"expected {(code, status)}, got {got}"
        return
    raise AssertionError(f"expected ClientError {code}/{status}, call succeeded")


def expect_connection_error(fn: Callable[[], Any]) -> str:
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

    try:
        fn()
    except ClientError as e:
        raise AssertionError(f"expected a connection error, got ClientError {client_error_code(e)}") from None
    except (BotoConnectionError, HTTPClientError) as e:
        return type(e).__name__
    raise AssertionError("expected a connection error, call succeeded")


def exists(s3: Any, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=BUCKET, Key=key)
        return True
    except ClientError as e:
        if client_error_code(e)[1] == 404:
            return False
        raise


# --------------------------------------------------------------------------- checks


def check_passthrough(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="plain/a.txt", Body=b"hello", ContentType="text/plain")
    got = s3.get_object(Bucket=BUCKET, Key="plain/a.txt")
    assert got["Body"].read() == b"hello"
    assert got["ContentType"] == "text/plain", got["ContentType"]
    head = s3.head_object(Bucket=BUCKET, Key="plain/a.txt")
    assert head["ContentLength"] == 5, head["ContentLength"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="plain/")["Contents"]]
    assert keys == ["plain/a.txt"], keys
    # query strings survive: ranged GET + list with delimiter / continuation
    assert s3.get_object(Bucket=BUCKET, Key="plain/a.txt", Range="bytes=1-3")["Body"].read() == b"ell"
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"plain/sub/k{i} with space+plus", Body=b"x")
    page = s3.list_objects_v2(Bucket=BUCKET, Prefix="plain/", Delimiter="/", MaxKeys=1)
    assert page["IsTruncated"], page
    assert s3.get_object(Bucket=BUCKET, Key="plain/sub/k1 with space+plus")["Body"].read() == b"x"
    assert not exists(s3, "plain/missing")  # HEAD 404 without body, connection reused after
    s3.delete_object(Bucket=BUCKET, Key="plain/a.txt")
    assert not exists(s3, "plain/a.txt")
    # the same object seen directly on moto
    assert exists(ctx["direct"], "plain/sub/k0 with space+plus")


def check_control_counts(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    reset(ctx)
    st = state(ctx)
    assert (st["requests"], st["injected"], st["rules"], st["log"]) == (0, 0, [], []), st
    s3.put_object(Bucket=BUCKET, Key="ctl/x.bin", Body=b"123")
    s3.get_object(Bucket=BUCKET, Key="ctl/x.bin")["Body"].read()
    exists(s3, "ctl/nope")
    st = state(ctx)
    assert st["requests"] == 3 and st["injected"] == 0, st
    assert [(e["method"], e["path"], e["fault"], e["status"]) for e in st["log"]] == [
        ("PUT", f"/{BUCKET}/ctl/x.bin", None, 200),
        ("GET", f"/{BUCKET}/ctl/x.bin", None, 200),
        ("HEAD", f"/{BUCKET}/ctl/nope", None, 404),
    ], st["log"]
    # invalid rule sets are rejected and leave the current set alone
    set_rules(ctx, {"method": "GET", "path_regex": "never-matches", "action": "status", "status": 503})
    for bad in ({"rules": [{"action": "explode"}]}, {"rules": [{"action": "drop", "path_regex": "("}]},
                {"rules": [{"action": "drop", "bogus": 1}]}, {"rules": [{"action": "drop", "times": -2}]},
                {"rules": "no"}, b"{not json"):
        status, body = ctl(ctx["pport"], "POST", bad)
        assert status == 400 and "error" in body, (bad, status, body)
    st = state(ctx)
    assert len(st["rules"]) == 1 and st["rules"][0]["path_regex"] == "never-matches", st["rules"]
    assert st["requests"] == 3, "control requests must not be counted"
    status, _ = ctl(ctx["pport"], "PATCH")
    assert status == 405, status
    reset(ctx)


def check_status_500_second_parquet_put(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    reset(ctx)
    set_rules(ctx, {"method": "PUT", "path_regex": r"\.parquet$", "skip": 1, "times": 1,
                    "action": "status", "status": 500})
    s3.put_object(Bucket=BUCKET, Key="t/data/a.parquet", Body=b"A")
    s3.put_object(Bucket=BUCKET, Key="t/metadata/v1.metadata.json", Body=b"{}")
    expect_client_error(lambda: s3.put_object(Bucket=BUCKET, Key="t/data/b.parquet", Body=b"B"),
                        "InternalError", 500)
    s3.put_object(Bucket=BUCKET, Key="t/data/c.parquet", Body=b"C")
    s3.get_object(Bucket=BUCKET, Key="t/data/a.parquet")["Body"].read()  # GET not matched
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="t/")["Contents"])
    assert keys == ["t/data/a.parquet", "t/data/c.parquet", "t/metadata/v1.metadata.json"], keys
    st = state(ctx)
    assert st["injected"] == 1, st
    assert st["rules"][0]["matched"] == 3 and st["rules"][0]["injected"] == 1, st["rules"]
    faults = [(e["method"], e["path"], e["status"]) for e in st["log"] if e["fault"]]
    assert faults == [("PUT", f"/{BUCKET}/t/data/b.parquet", 500)], faults
    reset(ctx)


def check_other_statuses(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    reset(ctx)
    s3.put_object(Bucket=BUCKET, Key="st/k", Body=b"v")
    set_rules(ctx,
              {"method": "GET", "path_regex": r"/st/k$", "action": "status", "status": 503},
              {"method": "HEAD", "path_regex": r"/st/k$", "action": "status", "status": 403},
              {"method": "DELETE", "path_regex": r"/st/k$", "action": "status", "status": 500,
               "code": "ServiceUnavailable"})
    expect_client_error(lambda: s3.get_object(Bucket=BUCKET, Key="st/k"), "SlowDown", 503)
    expect_client_error(lambda: s3.head_object(Bucket=BUCKET, Key="st/k"), "403", 403)  # HEAD: no body
    expect_client_error(lambda: s3.delete_object(Bucket=BUCKET, Key="st/k"), "ServiceUnavailable", 500)
    # times defaults to 1: everything passes now, on the same (kept-alive) connections
    assert s3.get_object(Bucket=BUCKET, Key="st/k")["Body"].read() == b"v"
    assert s3.head_object(Bucket=BUCKET, Key="st/k")["ContentLength"] == 1
    assert state(ctx)["injected"] == 3
    reset(ctx)


def check_drop(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    reset(ctx)
    set_rules(ctx, {"method": "PUT", "path_regex": r"/drop/", "action": "drop"})
    err = expect_connection_error(lambda: s3.put_object(Bucket=BUCKET, Key="drop/x", Body=b"x" * 1000))
    note(f"drop -> {err}")
    assert not exists(ctx["direct"], "drop/x"), "dropped request must not be forwarded"
    s3.put_object(Bucket=BUCKET, Key="drop/x", Body=b"second")  # times=1: next one passes
    assert s3.get_object(Bucket=BUCKET, Key="drop/x")["Body"].read() == b"second"
    set_rules(ctx, {"method": "GET", "path_regex": r"/drop/x$", "action": "drop"})
    note(f"drop GET -> {expect_connection_error(lambda: s3.get_object(Bucket=BUCKET, Key='drop/x'))}")
    st = state(ctx)
    assert st["injected"] == 2, st
    assert [e["status"] for e in st["log"] if e["fault"] == "drop"] == [None, None], st["log"]
    reset(ctx)


def check_drop_response(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    reset(ctx)
    set_rules(ctx, {"method": "PUT", "path_regex": r"/lost/answer\.parquet$", "action": "drop_response"})
    err = expect_connection_error(
        lambda: s3.put_object(Bucket=BUCKET, Key="lost/answer.parquet", Body=b"PAR1 data PAR1"))
    note(f"drop_response -> {err}")
    got = ctx["direct"].get_object(Bucket=BUCKET, Key="lost/answer.parquet")["Body"].read()
    assert got == b"PAR1 data PAR1", got
    assert s3.get_object(Bucket=BUCKET, Key="lost/answer.parquet")["Body"].read() == got
    assert state(ctx)["injected"] == 1
    reset(ctx)


def check_delay(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    reset(ctx)
    s3.put_object(Bucket=BUCKET, Key="slow/k", Body=b"v")
    set_rules(ctx, {"method": "GET", "path_regex": r"/slow/k$", "action": "delay", "seconds": 1.0})
    t0 = time.monotonic()
    assert s3.get_object(Bucket=BUCKET, Key="slow/k")["Body"].read() == b"v"
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    assert s3.get_object(Bucket=BUCKET, Key="slow/k")["Body"].read() == b"v"
    fast = time.monotonic() - t0
    note(f"delayed GET {slow:.3f}s, next GET {fast:.3f}s")
    assert 1.0 <= slow < 3.0, slow
    assert fast < 0.9, fast
    st = state(ctx)
    assert st["log"][-2]["fault"] == "delay" and st["log"][-2]["status"] == 200, st["log"]
    reset(ctx)


def check_skip_times_forever(ctx: dict[str, Any]) -> None:
    s3 = ctx["s3"]
    reset(ctx)
    s3.put_object(Bucket=BUCKET, Key="ever/k", Body=b"v")
    set_rules(ctx, {"method": None, "path_regex": r"/ever/k", "skip": 2, "times": -1,
                    "action": "status", "status": 503})
    s3.get_object(Bucket=BUCKET, Key="ever/k")["Body"].read()
    s3.head_object(Bucket=BUCKET, Key="ever/k")
    for _ in range(4):
        expect_client_error(lambda: s3.get_object(Bucket=BUCKET, Key="ever/k"), "SlowDown", 503)
    st = state(ctx)
    assert st["rules"][0]["matched"] == 6 and st["rules"][0]["injected"] == 4, st["rules"]
    reset(ctx)
    s3.get_object(Bucket=BUCKET, Key="ever/k")["Body"].read()


def check_probability_seed(ctx: dict[str, Any]) -> None:
    from botocore.exceptions import ClientError

    s3 = ctx["s3"]
    reset(ctx)
    s3.put_object(Bucket=BUCKET, Key="rnd/k", Body=b"v")

    def pattern(seed: int) -> str:
        set_rules(ctx, {"method": "GET", "path_regex": r"/rnd/k$", "times": -1, "action": "status",
                        "status": 500, "probability": 0.5, "seed": seed})
        out = []
        for _ in range(24):
            try:
                s3.get_object(Bucket=BUCKET, Key="rnd/k")["Body"].read()
                out.append(".")
            except ClientError:
                out.append("X")
        return "".join(out)

    a, b, c = pattern(7), pattern(7), pattern(8)
    note(f"seed 7: {a}  seed 8: {c}")
    assert a == b, (a, b)
    assert 0 < a.count("X") < 24, a
    assert a != c, "different seeds should give different patterns"
    reset(ctx)


def check_large_bodies(ctx: dict[str, Any]) -> None:
    from boto3.s3.transfer import TransferConfig

    s3 = ctx["s3"]
    reset(ctx)
    six = os.urandom(6 * 1024 * 1024)
    s3.put_object(Bucket=BUCKET, Key="big/six.bin", Body=six)  # Expect: 100-continue
    got = s3.get_object(Bucket=BUCKET, Key="big/six.bin")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(six).digest(), len(got)

    twelve = os.urandom(12 * 1024 * 1024)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024,
                         max_concurrency=3)
    t0 = time.monotonic()
    s3.upload_fileobj(io.BytesIO(twelve), BUCKET, "big/multi.bin", Config=cfg)
    up = time.monotonic() - t0
    buf = io.BytesIO()
    s3.download_fileobj(BUCKET, "big/multi.bin", buf, Config=cfg)
    assert buf.getvalue() == twelve, len(buf.getvalue())
    st = state(ctx)
    paths = [(e["method"], e["path"]) for e in st["log"]]
    assert ("POST", f"/{BUCKET}/big/multi.bin?uploads") in paths, paths
    parts = [p for m, p in paths if m == "PUT" and "partNumber=" in p and "uploadId=" in p]
    assert len(parts) == 3, parts
    assert any(m == "POST" and "uploadId=" in p for m, p in paths), paths
    assert all(e["status"] in (200, 206) for e in st["log"]), st["log"]
    note(f"12 MB multipart upload through the proxy in {up:.2f}s")
    reset(ctx)


def check_multipart_part_fault(ctx: dict[str, Any]) -> None:
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError
    from s3transfer.exceptions import S3UploadFailedError

    s3 = ctx["s3"]
    reset(ctx)
    set_rules(ctx, {"method": "PUT", "path_regex": r"[?&]uploadId=", "skip": 1, "action": "status",
                    "status": 503})
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024,
                         max_concurrency=1)
    try:
        s3.upload_fileobj(io.BytesIO(os.urandom(11 * 1024 * 1024)), BUCKET, "big/failed.bin", Config=cfg)
    except (S3UploadFailedError, ClientError) as e:
        assert "SlowDown" in str(e) or "503" in str(e), e
    else:
        raise AssertionError("multipart upload succeeded despite a failed part")
    assert not exists(ctx["direct"], "big/failed.bin")
    st = state(ctx)
    assert st["injected"] == 1, st
    assert any(e["method"] == "DELETE" and "uploadId=" in e["path"] for e in st["log"]), \
        "expected s3transfer to abort the multipart upload"
    reset(ctx)


def check_raw_chunked_keepalive(ctx: dict[str, Any]) -> None:
    reset(ctx)
    conn = http.client.HTTPConnection("127.0.0.1", ctx["pport"], timeout=30)
    hdrs = {"Authorization": FAKE_AUTH, "Content-Type": "application/octet-stream",
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    payload = os.urandom(1024 * 1024 + 123)
    path = f"/{BUCKET}/raw/chunked.bin"

    def chunks():
        for i in range(0, len(payload), 100_000):
            yield payload[i:i + 100_000]

    local: set[Any] = set()

    def do(method: str, url: str, body: Any = None, extra: dict[str, str] | None = None,
           chunked: bool = False) -> tuple[int, bytes, http.client.HTTPResponse]:
        conn.request(method, url, body=body, headers={**hdrs, **(extra or {})}, encode_chunked=chunked)
        resp = conn.getresponse()
        data = resp.read()
        local.add(conn.sock.getsockname() if conn.sock else None)
        assert not resp.will_close, f"{method} {url}: proxy wants to close the connection"
        return resp.status, data, resp

    status, _, _ = do("PUT", path, body=chunks(), chunked=True)
    assert status == 200, status
    status, data, resp = do("HEAD", path)
    assert status == 200 and data == b"" and int(resp.getheader("Content-Length")) == len(payload), \
        (status, resp.getheaders())
    status, data, _ = do("GET", path)
    assert status == 200 and data == payload, (status, len(data))
    status, data, _ = do("HEAD", f"/{BUCKET}/raw/missing")
    assert status == 404 and data == b"", status
    set_rules(ctx, {"method": "HEAD", "path_regex": "chunked", "action": "status", "status": 503},
              {"method": "PUT", "path_regex": r"\.bin2$", "action": "status", "status": 500})
    status, data, _ = do("HEAD", path)
    assert status == 503 and data == b"", status
    status, data, _ = do("PUT", path + "2", body=chunks(), chunked=True)  # body read, not forwarded
    assert status == 500 and b"<Code>InternalError</Code>" in data, (status, data)
    status, data, _ = do("GET", path, extra={"Range": "bytes=0-9"})
    assert status == 206 and data == payload[:10], (status, data)
    status, data, _ = do("PUT", f"/{BUCKET}/raw/empty", body=b"")
    assert status == 200, status
    status, data, _ = do("GET", f"/{BUCKET}/raw/empty")
    assert status == 200 and data == b"", (status, data)
    conn.close()
    assert len(local) == 1 and None not in local, f"connection was re-opened: {local}"
    st = state(ctx)
    assert st["requests"] == 9 and st["injected"] == 2, st
    reset(ctx)


def check_concurrency(ctx: dict[str, Any]) -> None:
    reset(ctx)
    s3 = ctx["s3"]
    s3.put_object(Bucket=BUCKET, Key="conc/k", Body=b"v" * 1000)
    set_rules(ctx, {"method": "GET", "path_regex": "/conc/k", "times": 10, "action": "status", "status": 503})
    errors: list[str] = []
    fails = [0]
    lock = threading.Lock()

    def worker(c: Any) -> None:
        from botocore.exceptions import ClientError

        for _ in range(10):
            try:
                assert c.get_object(Bucket=BUCKET, Key="conc/k")["Body"].read() == b"v" * 1000
            except ClientError as e:
                if client_error_code(e) != ("SlowDown", 503):
                    errors.append(repr(e))
                with lock:
                    fails[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    # boto3's default session is not thread-safe: create the clients here, use them there.
    threads = [threading.Thread(target=worker, args=(s3_client(ctx["proxy"]),)) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    took = time.monotonic() - t0
    assert not errors, errors[:3]
    st = state(ctx)
    assert st["requests"] == 81 and st["injected"] == 10 and fails[0] == 10, (st["requests"], st["injected"], fails)
    note(f"80 concurrent GETs in {took:.2f}s ({took / 80 * 1000:.1f} ms each, 8 threads)")
    reset(ctx)


def check_upstream_down_and_sigterm(ctx: dict[str, Any]) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()  # nothing listens there now
    px = Child(PROXY, "PROXY_PORT", "--upstream", f"http://127.0.0.1:{dead}")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=10)
        conn.request("GET", "/b/k")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 502 and b"BadGateway" in body, (resp.status, body)
        conn.close()
        t0 = time.monotonic()
        px.proc.send_signal(signal.SIGTERM)
        rc = px.proc.wait(10)
        assert rc == 0, rc
        note(f"exit on SIGTERM: rc={rc} after {time.monotonic() - t0:.2f}s")
    finally:
        px.kill()
    # bad command line
    r = subprocess.run([sys.executable, PROXY, "--upstream", "https://x:1"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)


def check_stdin_eof(ctx: dict[str, Any]) -> None:
    px: Child = ctx.pop("proxy_child")
    rc, took = px.close_stdin_and_wait(10)
    assert rc == 0, rc
    assert px.proc.stdout.read() == "", "proxy wrote more than the port line"
    note(f"exit on stdin EOF: rc={rc} after {took:.2f}s")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections sit in TIME_WAIT
    try:
        s.bind(("127.0.0.1", px.port))  # the port is free again (no listener left)
    finally:
        s.close()


def main() -> int:
    passed = failed = 0
    moto = proxy = None
    ctx: dict[str, Any] = {}

    def run(name: str, fn: Callable[[dict[str, Any]], None]) -> None:
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
            moto = Child(MOTO, "MOTO_PORT")
            proxy = Child(PROXY, "PROXY_PORT", "--upstream", moto.endpoint)
        except Exception as e:  # noqa: BLE001
            print(f"FAIL start-up: {e}", file=sys.stderr)
            print(f"{passed} passed, 1 failed")
            return 1
        passed += 1
        print(f"ok   start-up: MOTO_PORT={moto.port} in {moto.startup_s:.2f}s, "
              f"PROXY_PORT={proxy.port} in {proxy.startup_s:.2f}s", file=sys.stderr)
        ctx.update(proxy=proxy.endpoint, pport=proxy.port, proxy_child=proxy,
                   s3=s3_client(proxy.endpoint), direct=s3_client(moto.endpoint))
        run("plain put/get/head/list/delete pass through", check_passthrough)
        run("control API counters, log and validation", check_control_counts)
        run("500 on the 2nd .parquet PUT only", check_status_500_second_parquet_put)
        run("503 SlowDown / 403 on HEAD / code override", check_other_statuses)
        run("drop: connection error, not forwarded", check_drop)
        run("drop_response: error, but the PUT took effect", check_drop_response)
        run("delay", check_delay)
        run("skip + times=-1", check_skip_times_forever)
        run("probability + seed deterministic", check_probability_seed)
        run("6 MB put + 12 MB multipart round trip", check_large_bodies)
        run("fault on one UploadPart fails the upload", check_multipart_part_fault)
        run("raw chunked PUT + one keep-alive connection", check_raw_chunked_keepalive)
        run("concurrent requests counted exactly", check_concurrency)
        run("unreachable upstream -> 502, SIGTERM, bad CLI", check_upstream_down_and_sigterm)
        run("proxy exits on stdin EOF", check_stdin_eof)
        proxy = ctx.get("proxy_child")
    finally:
        for child in (proxy, moto):
            if child is not None and child.proc.poll() is None:
                try:
                    child.close_stdin_and_wait(10)
                except Exception:  # noqa: BLE001
                    child.kill()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
