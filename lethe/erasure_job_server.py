"""A small reference vendor with an asynchronous erasure API, for the tests and the demo.

    python -m lethe.erasure_job_server --port 9201 --token T --delay 2d

POST /v1/erasures         a JSON object naming the subject -> 202 {"id", "state": "pending"};
                          the same subject again while its job is pending -> 409 naming that job
GET  /v1/erasures/{id}    -> {"id", "state": "pending" | "completed" | a forced state}

There is deliberately no way to list or search erasure requests by person, and the server
keeps no subject at all: only a keyed digest of the request body, to recognise a repeat.

Control endpoints (same bearer token) let a test play the world's clock and the vendor's failures:

POST /_control/clock      {"advance": seconds} or {"now": unix seconds}; the clock only moves forward
GET  /_control/clock      -> {"now": unix seconds}
POST /_control/jobs/{id}  {"state": "failed"} forces a job's state
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from lethe.durations import parse_duration

_MAX_BODY = 64 * 1024


@dataclass
class _Job:
    id: str
    created: float
    forced: str | None = None


class Vendor:
    """The erasure jobs, on a clock that tests may move forward."""

    def __init__(self, delay: timedelta) -> None:
        self._delay = delay.total_seconds()
        self._offset = 0.0
        self._key = secrets.token_bytes(32)
        self._jobs: dict[str, _Job] = {}
        self._latest: dict[bytes, _Job] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def move_clock(self, advance: float = 0.0, to: float | None = None) -> float:
        with self._lock:
            self._offset += max(0.0, advance)
            if to is not None:
                self._offset = max(self._offset, to - time.time())
            return self.now()

    def request(self, subject: object) -> tuple[bool, _Job]:
        """(created, job): a repeat of a pending request answers with the pending job."""
        canonical = json.dumps(subject, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = hmac.new(self._key, canonical.encode(), hashlib.sha256).digest()
        with self._lock:
            latest = self._latest.get(digest)
            if latest is not None and self._state(latest) == "pending":
                return False, latest
            job = _Job(id=f"er_{secrets.token_hex(12)}", created=self.now())
            self._jobs[job.id] = self._latest[digest] = job
            return True, job

    def job(self, job_id: str) -> _Job | None:
        return self._jobs.get(job_id)

    def force(self, job_id: str, state: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            job.forced = state
            return True

    def state(self, job: _Job) -> str:
        with self._lock:
            return self._state(job)

    def _state(self, job: _Job) -> str:
        if job.forced:
            return job.forced
        return "completed" if self.now() - job.created >= self._delay else "pending"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], vendor: Vendor, token: str) -> None:
        super().__init__(address, _Handler)
        self.vendor = vendor
        self.token = token


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        # Request lines can carry whatever a client put in a URL: this server logs nothing.
        pass

    def do_GET(self) -> None:
        if not self._authorized():
            return
        parts = self._parts()
        vendor = self.server.vendor
        if parts == ["v1", "erasures"]:
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "erasure requests cannot be listed"}, Allow="POST")
        elif len(parts) == 3 and parts[:2] == ["v1", "erasures"]:
            job = vendor.job(parts[2])
            if job is None:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "no such erasure job"})
            else:
                self._reply(HTTPStatus.OK, {"id": job.id, "state": vendor.state(job)})
        elif parts == ["_control", "clock"]:
            self._reply(HTTPStatus.OK, {"now": vendor.now()})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        body = self._json_body()
        if body is None:
            return
        parts = self._parts()
        vendor = self.server.vendor
        if parts == ["v1", "erasures"]:
            if not isinstance(body, dict) or not body:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object naming the subject"})
                return
            created, job = vendor.request(body)
            answer = {"id": job.id, "state": vendor.state(job)}
            if created:
                self._reply(HTTPStatus.ACCEPTED, answer, Location=f"/v1/erasures/{job.id}")
            else:
                self._reply(HTTPStatus.CONFLICT, {**answer, "error": "an erasure for this subject is already pending"})
        elif parts == ["_control", "clock"] and isinstance(body, dict):
            try:
                now = vendor.move_clock(float(body.get("advance", 0)), _number(body.get("now")))
            except (TypeError, ValueError):
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "advance and now must be numbers"})
                return
            self._reply(HTTPStatus.OK, {"now": now})
        elif len(parts) == 3 and parts[:2] == ["_control", "jobs"] and isinstance(body, dict):
            state = body.get("state")
            if not isinstance(state, str) or not state:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "state must be a non-empty string"})
            elif vendor.force(parts[2], state):
                self._reply(HTTPStatus.OK, {"id": parts[2], "state": state})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "no such erasure job"})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _authorized(self) -> bool:
        expected = f"Bearer {self.server.token}".encode()
        given = self.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return True
        self._discard_body()
        self._reply(HTTPStatus.UNAUTHORIZED, {"error": "invalid or missing bearer token"}, **{"WWW-Authenticate": "Bearer"})
        return False

    def _parts(self) -> list[str]:
        return [unquote(part) for part in urlsplit(self.path).path.split("/") if part]

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= _MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _json_body(self) -> object | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return None
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body is not JSON"})
            return None

    def _reply(self, status: HTTPStatus, payload: dict[str, object], **headers: str) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def serve(port: int, token: str, delay: timedelta, host: str = "127.0.0.1") -> None:
    server = _Server((host, port), Vendor(delay), token)
    print(f"erasure-job server on http://{host}:{port}, jobs complete after {delay}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9201)
    parser.add_argument("--token", required=True, help="the bearer token clients must send")
    parser.add_argument("--delay", type=parse_duration, default=timedelta(days=2), help='e.g. "2d", "90s" (default 2d)')
    args = parser.parse_args(argv)
    serve(args.port, args.token, args.delay, args.host)


if __name__ == "__main__":
    main()
