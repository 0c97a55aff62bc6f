#!/usr/bin/env python3
"""Fault-injecting HTTP/1.1 reverse proxy for the S3 side of the moto emulator.

Used by the sales-history Rust integration tests to make object storage fail
on purpose. Put it in front of ``moto_server.py``'s endpoint and point the S3
client (OpenDAL / reqwest, boto3, ...) at the proxy instead:

    fault_proxy.py --upstream http://127.0.0.1:<MOTO_PORT> [--port 0]

It binds 127.0.0.1 (default: a free port), and once it accepts connections it
prints exactly one line to stdout and flushes:

    PROXY_PORT=<port>

Nothing else is ever written to stdout; diagnostics go to stderr (quiet unless
--verbose). It runs until its stdin reaches EOF (unless --ignore-stdin) or it
receives SIGTERM / SIGINT, then exits 0. Spawn it like moto_server.py: stdin =
a pipe the parent keeps open (Rust: ``Stdio::piped()``, keep the ChildStdin).

Forwarding
    Every method (GET, HEAD, PUT, POST, DELETE, ...) is forwarded with the exact
    request target (path + query string, byte for byte), the client's headers
    (``Host`` included, as the client sent it) and the body verbatim. A request
    body sent with ``Transfer-Encoding: chunked`` is read completely and
    forwarded with ``Content-Length`` (the HTTP framing is removed, the content,
    e.g. an ``aws-chunked`` payload, is untouched). ``Expect: 100-continue`` is
    answered by the proxy and not forwarded. Each request uses its own upstream
    connection (http.client); the client side is HTTP/1.1 keep-alive and every
    response carries ``Content-Length`` (HEAD: the upstream's value, no body).
    An unreachable upstream gives 502 with an S3-style XML error.

Control API (same port, path prefix ``/__faults__``, never forwarded)
    POST   /__faults__   body {"rules": [rule, ...]} (or a bare list): replace the
                         rule set (rule counters start at 0). 200 {"rules": [...]}
                         or 400 {"error": "..."} (rule set unchanged).
    DELETE /__faults__   clear rules, counters and log. 200 {"ok": true}
    GET    /__faults__   200 {"rules": [rule + {"matched": n, "injected": n}, ...],
                              "injected": N, "requests": N,
                              "log": [{"method", "path", "fault", "status"}, ...]}
                         "requests": proxied (non-control) requests since start /
                         last DELETE; "injected": faults injected (any action);
                         "log": the last 200 proxied requests, oldest first;
                         "fault" is the action or null, "status" the HTTP status
                         the client received (null for drop / drop_response).

Rule (JSON object; unknown keys are rejected)
    method       "GET" | "PUT" | ... | null          default null = any method
    path_regex   Python regex, re.search()ed on the raw request target
                 (path + "?" + query, percent-encoding as sent). default "" = all
    skip         let the first K matching requests through        default 0
    times        inject on the next T matching requests after the skipped
                 ones; -1 = forever                                default 1
    action       "status" | "drop" | "delay" | "drop_response"    required
    status       HTTP status for action "status"                   default 500
                 XML error code: 500 InternalError, 503 SlowDown, 403 AccessDenied,
                 404 NoSuchKey, 400 InvalidRequest, else InternalError
    code         override the XML <Code> (action "status")         optional
    seconds      sleep before forwarding (action "delay")          default 1.0
    probability  0..1: inject only with this probability           default 1.0
    seed         seed of the rule's own random.Random              default 0

    action "status":        read the request, do not forward it, answer with
                            the status and an S3-style XML error body (HEAD: no
                            body); the connection stays usable.
    action "drop":          read the request, do not forward it, close the
                            connection without any response.
    action "delay":         sleep ``seconds``, then forward normally.
    action "drop_response": forward the request (it takes effect upstream), read
                            the upstream response, then close the connection
                            without answering ("lost answer").

    Evaluation per proxied request, under one lock: rules are tried in order;
    a rule matches when method (if set) and path_regex match. A matching rule
    counts the request (``matched`` += 1); it fires when matched > skip, it has
    fired fewer than ``times`` times (or times == -1) and, if probability < 1,
    its random draw ``rng.random() < probability`` succeeds (one draw per
    matching request inside the skip/times window, so the pattern is
    deterministic per seed for a given request order). The first rule that
    fires decides the fault and evaluation stops there (later rules do not see
    the request).

Options:
    --upstream URL   http://host:port of the emulator (required)
    --host H         bind address (default 127.0.0.1)
    --port N         port (default 0 = pick a free one)
    --timeout S      upstream socket timeout in seconds (default 120)
    --ignore-stdin   do not exit when stdin reaches EOF (manual use)
    --verbose        log every request to stderr

Exit codes: 0 normal shutdown, 1 start-up failure, 2 bad command line.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

CONTROL_PATH = "/__faults__"
LOG_LIMIT = 200
ACTIONS = ("status", "drop", "delay", "drop_response")
RULE_KEYS = {"method", "path_regex", "skip", "times", "action", "status", "code", "seconds",
             "probability", "seed"}
ERROR_CODES = {
    400: ("InvalidRequest", "Injected fault: invalid request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    502: ("BadGateway", "Bad gateway"),
    503: ("SlowDown", "Please reduce your request rate."),
}
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy re-frames itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}

VERBOSE = False


def log(msg: str) -> None:
    print(f"[fault_proxy] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- rules


class RuleError(ValueError):
    pass


class Rule:
    def __init__(self, spec: Any):
        if not isinstance(spec, dict):
            raise RuleError(f"a rule must be a JSON object, got {type(spec).__name__}")
        unknown = set(spec) - RULE_KEYS
        if unknown:
            raise RuleError(f"unknown rule key(s) {sorted(unknown)}; allowed: {sorted(RULE_KEYS)}")
        method = spec.get("method")
        if method is not None and not (isinstance(method, str) and method):
            raise RuleError("method must be a non-empty string or null")
        self.method = method.upper() if method else None
        self.path_regex = spec.get("path_regex") or ""
        if not isinstance(self.path_regex, str):
            raise RuleError("path_regex must be a string")
        try:
            self.regex = re.compile(self.path_regex)
        except re.error as e:
            raise RuleError(f"bad path_regex {self.path_regex!r}: {e}") from None
        self.skip = _int(spec, "skip", 0, minimum=0)
        self.times = _int(spec, "times", 1, minimum=-1)
        self.action = spec.get("action")
        if self.action not in ACTIONS:
            raise RuleError(f"action must be one of {list(ACTIONS)}, got {self.action!r}")
        self.status = _int(spec, "status", 500, minimum=100)
        if self.status > 599:
            raise RuleError("status must be 100..599")
        self.code = spec.get("code")
        if self.code is not None and not isinstance(self.code, str):
            raise RuleError("code must be a string")
        seconds = spec.get("seconds", 1.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise RuleError("seconds must be a number >= 0")
        self.seconds = float(seconds)
        prob = spec.get("probability", 1.0)
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
            raise RuleError("probability must be a number in [0, 1]")
        self.probability = float(prob)
        seed = spec.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise RuleError("seed must be an integer or a string")
        self.seed = seed
        self.rng = random.Random(seed)
        self.matched = 0
        self.injected = 0

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method == method) and self.regex.search(target) is not None

    def fires(self) -> bool:
        """Called (under the lock) for a matching request; counts it and decides."""
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.times != -1 and self.injected >= self.times:
            return False
        if self.probability < 1.0 and not self.rng.random() < self.probability:
            return False
        self.injected += 1
        return True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path_regex": self.path_regex, "skip": self.skip,
                               "times": self.times, "action": self.action}
        if self.action == "status":
            out["status"] = self.status
            if self.code is not None:
                out["code"] = self.code
        if self.action == "delay":
            out["seconds"] = self.seconds
        if self.probability < 1.0:
            out["probability"] = self.probability
            out["seed"] = self.seed
        out["matched"] = self.matched
        out["injected"] = self.injected
        return out


def _int(spec: dict[str, Any], key: str, default: int, minimum: int) -> int:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise RuleError(f"{key} must be an integer >= {minimum}, got {v!r}")
    return v


class FaultState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.injected = 0
        self.requests = 0
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LIMIT)

    def set_rules(self, specs: Any) -> list[dict[str, Any]]:
        if isinstance(specs, dict):
            if set(specs) - {"rules"}:
                raise RuleError('body must be {"rules": [...]}')
            specs = specs.get("rules")
        if not isinstance(specs, list):
            raise RuleError('body must be {"rules": [...]} with a list')
        rules = [Rule(s) for s in specs]  # validate all before replacing
        with self.lock:
            self.rules = rules
            return [r.to_json() for r in rules]

    def clear(self) -> None:
        with self.lock:
            self.rules = []
            self.injected = 0
            self.requests = 0
            self.log.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"rules": [r.to_json() for r in self.rules], "injected": self.injected,
                    "requests": self.requests, "log": list(self.log)}

    def decide(self, method: str, target: str) -> tuple[Rule | None, dict[str, Any]]:
        """Count the request, pick the firing rule (or None) and append its log entry."""
        with self.lock:
            self.requests += 1
            chosen = None
            for rule in self.rules:
                if rule.matches(method, target) and rule.fires():
                    chosen = rule
                    break
            if chosen is not None:
                self.injected += 1
            entry = {"method": method, "path": target,
                     "fault": chosen.action if chosen else None, "status": None}
            self.log.append(entry)
            return chosen, entry

    def set_status(self, entry: dict[str, Any], status: int | None) -> None:
        with self.lock:
            entry["status"] = status


# --------------------------------------------------------------------------- HTTP


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], upstream: tuple[str, int], timeout: float):
        super().__init__(addr, ProxyHandler)
        self.upstream = upstream
        self.upstream_timeout = timeout
        self.state = FaultState()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if VERBOSE:
            super().handle_error(request, client_address)


class DropConnection(Exception):
    """Close the client connection without writing anything."""


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_proxy"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: ProxyServer

    # ---- plumbing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if VERBOSE:
            log(f"{self.address_string()} {format % args}")

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except DropConnection:
            self.close_connection = True
        except (ConnectionError, socket.timeout, BrokenPipeError):
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body (None when the request has none); de-chunks chunked bodies."""
        te = self.headers.get("Transfer-Encoding", "")
        if te:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings and codings[-1] == "chunked":
                return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, "bad Content-Length")
            raise DropConnection from None
        return self._read_exact(n)

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("client closed the connection mid-body")
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("client closed the connection mid-chunk")
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ConnectionError(f"bad chunk size line {line!r}") from None
            if size == 0:
                break
            parts.append(self._read_exact(size))
            if self.rfile.readline(65537) not in (b"\r\n", b"\n"):
                raise ConnectionError("missing CRLF after chunk")
        while True:  # trailer section (dropped), ends with an empty line
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(parts)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, head: bool = False,
              reason: str | None = None) -> None:
        self.send_response_only(status, reason)
        has_length = False
        for k, v in headers:
            if k.lower() == "content-length":
                has_length = True
            self.send_header(k, v)
        if not head and status >= 200 and status not in (204, 304):
            if not has_length:
                self.send_header("Content-Length", str(len(body)))
        elif head and not has_length:
            self.send_header("Content-Length", "0")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self._send(status, [("Content-Type", "application/json")], body)

    def _send_s3_error(self, status: int, code: str | None, head: bool) -> None:
        dflt_code, message = ERROR_CODES.get(status, ("InternalError", "Injected fault"))
        code = code or dflt_code
        rid = uuid.uuid4().hex[:16].upper()
        resource = urlsplit(self.path).path
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<Resource>{escape(resource)}</Resource><RequestId>{rid}</RequestId></Error>"
        ).encode()
        hdrs = [("Content-Type", "application/xml"), ("x-amz-request-id", rid),
                ("Date", self.date_time_string()), ("Server", self.server_version)]
        if head:
            hdrs.append(("Content-Length", "0"))
        self._send(status, hdrs, body, head=head)

    # ---- dispatch

    def _dispatch(self) -> None:
        method = self.command.upper()
        target = self.path
        body = self._read_body()
        if urlsplit(target).path.rstrip("/") == CONTROL_PATH or target.startswith(CONTROL_PATH + "/"):
            self._control(method, body)
            return
        state = self.server.state
        rule, entry = state.decide(method, target)
        head = method == "HEAD"
        action = rule.action if rule else None
        if VERBOSE and action in ("drop", "status", "drop_response"):
            log(f"{method} {target}: injecting {action}")
        if action == "drop":
            raise DropConnection
        if action == "status":
            assert rule is not None
            state.set_status(entry, rule.status)
            self._send_s3_error(rule.status, rule.code, head)
            return
        if action == "delay":
            assert rule is not None
            time.sleep(rule.seconds)
        try:
            status, reason, headers, resp_body = self._forward(method, target, body)
        except (OSError, http.client.HTTPException) as e:
            if action == "drop_response":
                raise DropConnection from None
            if VERBOSE:
                log(f"upstream error for {method} {target}: {type(e).__name__}: {e}")
            state.set_status(entry, 502)
            self._send_s3_error(502, "BadGateway", head)
            return
        if action == "drop_response":
            raise DropConnection
        state.set_status(entry, status)
        if VERBOSE:
            log(f"{method} {target} -> {status}{f' ({action})' if action else ''}")
        self._send(status, headers, resp_body, head=head, reason=reason)

    def _forward(self, method: str, target: str, body: bytes | None
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, port = self.server.upstream
        headers: list[tuple[str, str]] = []
        conn_tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        for k, v in self.headers.items():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in conn_tokens or lk in ("content-length", "expect"):
                continue
            headers.append((k, v))
        if body is not None:
            headers.append(("Content-Length", str(len(body))))
        conn = http.client.HTTPConnection(host, port, timeout=self.server.upstream_timeout)
        try:
            # putrequest/putheader keep duplicate headers and the exact target.
            names = {k.lower() for k, _ in headers}
            conn.putrequest(method, target, skip_host="host" in names,
                            skip_accept_encoding="accept-encoding" in names)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders(message_body=body)
            resp = conn.getresponse()
            data = resp.read()  # b"" for HEAD / 204 / 304
            out: list[tuple[str, str]] = []
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in HOP_BY_HOP:
                    continue
                if lk == "content-length" and method != "HEAD":
                    continue  # re-framed from the bytes actually read
                out.append((k, v))
            return resp.status, resp.reason, out, data
        finally:
            conn.close()

    def _control(self, method: str, body: bytes | None) -> None:
        state = self.server.state
        if method == "HEAD":
            self._send(200, [("Content-Type", "application/json")], b"", head=True)
        elif method == "GET":
            self._send_json(200, state.snapshot())
        elif method == "DELETE":
            state.clear()
            self._send_json(200, {"ok": True})
        elif method in ("POST", "PUT"):
            try:
                spec = json.loads(body or b"null")
                rules = state.set_rules(spec)
            except (ValueError, RuleError) as e:
                self._send_json(400, {"error": str(e)})
                return
            if VERBOSE:
                log(f"rules set: {json.dumps(rules)}")
            self._send_json(200, {"rules": rules})
        else:
            self._send_json(405, {"error": f"{method} not allowed on {CONTROL_PATH}"})

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


# --------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: stderr, exit 2
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fault_proxy.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="http://host:port of the S3 endpoint")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    p.add_argument("--timeout", type=float, default=120.0, help="upstream timeout in seconds")
    p.add_argument("--ignore-stdin", action="store_true", help="do not exit when stdin reaches EOF")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return p


def parse_upstream(parser: argparse.ArgumentParser, url: str) -> tuple[str, int]:
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname or (u.path not in ("", "/")) or u.query:
        parser.error(f"--upstream must look like http://host:port, got {url!r}")
    try:
        port = u.port or 80
    except ValueError:
        parser.error(f"bad port in --upstream {url!r}")
    return u.hostname, port


def main(argv: list[str] | None = None) -> int:
    global VERBOSE
    parser = build_parser()
    args = parser.parse_args(argv)
    upstream = parse_upstream(parser, args.upstream)
    VERBOSE = args.verbose
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
        server = ProxyServer((args.host, args.port), upstream, args.timeout)
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="proxy-serve", daemon=True).start()
        # Make sure the accept loop answers before announcing the port.
        probe_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        conn = http.client.HTTPConnection(probe_host, port, timeout=10)
        try:
            conn.request("GET", CONTROL_PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"self-probe got HTTP {resp.status}")
        finally:
            conn.close()
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
        sys.stdout.write(f"PROXY_PORT={port}\n")
        sys.stdout.flush()
    except OSError as e:  # parent already gone
        request_stop(f"stdout: {e}")
    if VERBOSE:
        log(f"listening on {args.host}:{port} -> {upstream[0]}:{upstream[1]} "
            f"(ready in {time.monotonic() - t0:.3f}s)")

    while not stop.wait(0.5):
        pass

    if VERBOSE:
        log(f"stopping ({reason[0] if reason else 'stop'})")
    closer = threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True)
    closer.start()
    closer.join(5.0)
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
