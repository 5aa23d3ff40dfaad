"""A fault-injecting HTTP reverse proxy for the tests, the demo and the benchmarks.

It sits on loopback in front of a real SCIM server (scim2-server) and forwards every
request unchanged: method, path, query, headers (Host included, so the server's
`meta.location` points at the proxy) and body. Rules, matched in order, make it
misbehave the way real SaaS APIs do:

    status     answer this status without forwarding (Retry-After + SCIM error body)
    drop       close the connection without answering; "after" forwards first, so the
               upstream acted but the client never hears about it
    delay_ms   wait before acting (alone: before forwarding)
    lie        answer 204 (or the given status) without forwarding: a DELETE that
               "succeeds" and did nothing
    unfilter   strip the `filter` query parameter: a server that ignores filters

Each rule matches a method (`*` for any), a path regex (`re.search`, so anchor with
`^`/`$`) and optionally a substring of the URL-decoded query; `times` limits it to its
first N applications, `probability` rolls a seeded RNG (repeatable for a sequential
client). A request no rule applies to is forwarded.

Global options: `latency_ms` added to every request, and `rate_limit` requests per
`rate_window_s` (1 s) enforced with a sliding window: never more than N admitted in any
window, which a token bucket does not guarantee. The excess gets 429 + Retry-After
(whole seconds, at least 1) and is not forwarded. Latency comes first, then the rate
limit, then the rules: a request a rule answers still used up its slot, as at a real API.

Control API on the same port, never forwarded:

    GET|PUT /_proxy/rules     {"seed": 0, "rules": [...]}  (PUT replaces, resets counters)
    GET|PUT /_proxy/options   {"latency_ms": 0, "rate_limit": null, "rate_window_s": 1.0}
    GET|DELETE /_proxy/log    the latest requests seen (200 000 kept) / clear it and the stats
    GET /_proxy/stats         counts by status and by rule, 429s sent, drops

Built on aiohttp (server and pooled client) on uvloop: about half the CPU per request
of uvicorn + httpx, and `drop` can abort the client's TCP connection through public API
(ASGI has no way to close a connection without answering).

Privacy: the proxy never logs or stores request or response bodies or query strings;
they carry identifiers (a SCIM filter holds a userName or an email). The log keeps the
method, the path without its query, timing, status and which rule applied. SCIM paths
hold opaque resource ids only.

Run: python -m lethe.faultproxy --port P --upstream http://127.0.0.1:Q [--rules rules.json]
     [--rate-limit N [--rate-window S]] [--latency-ms N] [--log FILE]
It listens on 127.0.0.1 only and refuses an upstream that is not on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

import aiohttp
import httpx
from aiohttp import web
from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

CONTROL_PREFIX = "/_proxy/"
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
# Connection-scoped headers (RFC 9110 §7.6.1) belong to one hop; the length is recomputed.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
     b"transfer-encoding", b"upgrade", b"proxy-connection", b"content-length"}
)


class Rule(BaseModel):
    """One fault. Exactly one action (status, drop, lie, unfilter) or a bare delay."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    method: str = "*"
    path: str = ""
    query: str | None = None
    times: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    delay_ms: float = Field(default=0.0, ge=0.0)
    status: int | None = Field(default=None, ge=100, le=599)
    retry_after: int | None = Field(default=None, ge=0)
    drop: Literal["before", "after"] | None = None
    lie: int | None = Field(default=None, ge=100, le=599)
    unfilter: bool = False

    @field_validator("drop", mode="before")
    @classmethod
    def _drop_true_means_before(cls, value: Any) -> Any:
        if value is True:
            return "before"
        return None if value is False else value

    @field_validator("lie", mode="before")
    @classmethod
    def _lie_true_means_204(cls, value: Any) -> Any:
        if value is True:
            return 204
        return None if value is False else value

    @field_validator("path")
    @classmethod
    def _path_is_a_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _one_action(self) -> Rule:
        actions = [n for n in ("status", "drop", "lie") if getattr(self, n) is not None] + (
            ["unfilter"] if self.unfilter else []
        )
        if len(actions) > 1:
            raise ValueError(f"a rule has one action, this one has {actions}")
        if not actions and not self.delay_ms:
            raise ValueError("a rule needs an action: status, drop, lie, unfilter or delay_ms")
        if self.retry_after is not None and self.status is None:
            raise ValueError("retry_after goes with status")
        return self

    @property
    def label(self) -> str:
        """How the log names this rule: its name, else its action."""
        if self.name:
            return self.name
        if self.status is not None:
            return f"status {self.status}"
        if self.drop is not None:
            return f"drop {self.drop}"
        if self.lie is not None:
            return f"lie {self.lie}"
        return "unfilter" if self.unfilter else f"delay {self.delay_ms:g}ms"


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    rules: list[Rule] = []


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0.0)
    rate_limit: int | None = Field(default=None, ge=1)  # requests per rate_window_s
    rate_window_s: float = Field(default=1.0, gt=0.0)


class LogEntry(BaseModel):
    """One request as the proxy saw it. No query string, no body: they carry identifiers."""

    seq: int
    mono: float  # time.monotonic() when the proxy decided (after latency_ms); system-wide on Linux
    wall: float  # time.time() at the same moment
    method: str
    path: str
    status: int | None  # what the client got; None when the connection was dropped
    forwarded: bool
    upstream_status: int | None = None
    rule: str | None = None  # the rule's name or label, "rate_limit", or None
    ms: float  # from arrival to the answer (or the drop)


def max_in_window(entries: Iterable[LogEntry], window_s: float = 1.0, forwarded_only: bool = True) -> int:
    """The most requests seen in any `window_s`-long window (closed at the start, open at the end)."""
    times = sorted(e.mono for e in entries if e.forwarded or not forwarded_only)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def check_loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"upstream {url!r} is not on loopback: the fault proxy only talks to 127.0.0.1")
    return url.rstrip("/")


class RateLimiter:
    """Sliding window: admits at most `limit` requests in any `window_s`-long window."""

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.admitted: deque[float] = deque()

    def admit(self, now: float) -> float:
        """0 when admitted, else the seconds until a slot frees up."""
        while self.admitted and now - self.admitted[0] >= self.window_s:
            self.admitted.popleft()
        if len(self.admitted) < self.limit:
            self.admitted.append(now)
            return 0.0
        return self.window_s - (now - self.admitted[0])


def _json(status: int, payload: Any, content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(),
                        headers={"Content-Type": content_type, **(headers or {})})


def _scim_error(status: int, detail: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status in (204, 304) or status < 200:  # these carry no body
        return web.Response(status=status, headers=headers)
    body = {"schemas": [SCIM_ERROR], "status": str(status), "detail": detail}
    return _json(status, body, "application/scim+json", headers)


def _strip_filter(query: str) -> str:
    # Drop only the filter pair and keep every other byte as sent.
    return "&".join(part for part in query.split("&") if unquote_plus(part.split("=", 1)[0]) != "filter")


class FaultProxyApp:
    """The proxy's state and its aiohttp handlers; `web_app()` serves them."""

    def __init__(self, upstream: str, options: Options | None = None, log_file: Path | None = None,
                 log_max: int = 200_000) -> None:
        self.upstream = check_loopback(upstream)
        self.log: deque[LogEntry] = deque(maxlen=log_max)
        self.stats: Counter[str] = Counter()
        self._log_file = log_file.open("a", buffering=1) if log_file else None
        self._seq = 0
        self._session: aiohttp.ClientSession | None = None
        self.set_rules(RuleSet())
        self.set_options(options or Options())

    def set_rules(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._patterns = [re.compile(rule.path) for rule in ruleset.rules]
        self._applied = [0] * len(ruleset.rules)
        self._rng = random.Random(ruleset.seed)

    def set_options(self, options: Options) -> None:
        self.options = options
        self._limiter = RateLimiter(options.rate_limit, options.rate_window_s) if options.rate_limit else None

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", CONTROL_PREFIX + "{what}", self.control)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        app.on_cleanup.append(self._close)
        return app

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Relay exactly what the client sent and what the upstream answered: no default
            # headers added, no decompression.
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=60),
                connector=aiohttp.TCPConnector(limit=100),
            )
        return self._session

    async def _close(self, _app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()
        if self._log_file is not None:
            self._log_file.close()

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        if self.options.latency_ms:
            await asyncio.sleep(self.options.latency_ms / 1000)
        now = time.monotonic()
        entry = LogEntry(seq=0, mono=now, wall=time.time(), method=request.method, path=request.path,
                         status=None, forwarded=False, ms=0.0)
        query = request.raw_path.partition("?")[2]
        wait = self._limiter.admit(now) if self._limiter else 0.0
        rule = None if wait else self._match(request.method, request.path, query)
        if wait:
            entry.rule = "rate_limit"
            response = _scim_error(429, "rate limit exceeded (lethe fault proxy)", max(1, math.ceil(wait)))
        elif rule is None:
            response = await self._forward(request, query, entry)
        else:
            entry.rule = rule.label
            if rule.delay_ms:
                await asyncio.sleep(rule.delay_ms / 1000)
            if rule.status is not None:
                response = _scim_error(rule.status, "injected by the lethe fault proxy", rule.retry_after)
            elif rule.lie is not None:
                response = web.Response(status=rule.lie)
            elif rule.drop is not None:
                if rule.drop == "after":
                    await self._forward(request, query, entry)
                self._record(entry, None, arrived)
                return self._drop(request)
            else:
                response = await self._forward(request, _strip_filter(query) if rule.unfilter else query, entry)
        self._record(entry, response.status, arrived)
        return response

    def _match(self, method: str, path: str, query: str) -> Rule | None:
        decoded: str | None = None
        for i, rule in enumerate(self.ruleset.rules):
            if rule.method not in ("*", method) or not self._patterns[i].search(path):
                continue
            if rule.query is not None:
                decoded = unquote_plus(query) if decoded is None else decoded
                if rule.query not in decoded:
                    continue
            if rule.times is not None and self._applied[i] >= rule.times:
                continue
            if rule.probability is not None and self._rng.random() >= rule.probability:
                continue
            self._applied[i] += 1
            return rule
        return None

    async def _forward(self, request: web.Request, query: str, entry: LogEntry) -> web.Response:
        target = request.raw_path.partition("?")[0] + ("?" + query if query else "")
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers if k.lower() not in HOP_BY_HOP
        )
        body = await request.read()
        entry.forwarded = True
        try:
            async with self.session.request(request.method, URL(self.upstream + target, encoded=True),
                                            headers=headers, data=body or None, allow_redirects=False) as upstream:
                content = await upstream.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return _scim_error(502, f"upstream unreachable: {type(exc).__name__}")
        entry.upstream_status = upstream.status
        relayed = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers if k.lower() not in HOP_BY_HOP
        )
        return web.Response(status=upstream.status, reason=upstream.reason, headers=relayed, body=content)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client any more: the connection is gone.
        return web.Response(status=499)

    def _record(self, entry: LogEntry, status: int | None, arrived: float) -> None:
        self._seq += 1
        entry.seq, entry.status, entry.ms = self._seq, status, round((time.monotonic() - arrived) * 1000, 3)
        self.log.append(entry)
        self.stats["requests"] += 1
        self.stats[f"status {status}" if status is not None else "dropped"] += 1
        if entry.forwarded:
            self.stats["forwarded"] += 1
        if entry.rule:
            self.stats[f"rule {entry.rule}"] += 1
        if self._log_file is not None:
            self._log_file.write(entry.model_dump_json() + "\n")

    def stats_view(self) -> dict[str, Any]:
        return {
            "requests": self.stats["requests"],
            "forwarded": self.stats["forwarded"],
            "rate_limited": self.stats["rule rate_limit"],
            "dropped": self.stats["dropped"],
            "by_status": {k.split(" ", 1)[1]: v for k, v in sorted(self.stats.items()) if k.startswith("status ")},
            "by_rule": {k.split(" ", 1)[1]: v for k, v in sorted(self.stats.items()) if k.startswith("rule ")},
        }

    async def control(self, request: web.Request) -> web.Response:
        key = (request.method, request.match_info["what"])
        try:
            if key == ("GET", "rules"):
                return _json(200, self.ruleset.model_dump(exclude_defaults=True))
            if key == ("PUT", "rules"):
                payload = json.loads(await request.read() or b"{}")
                self.set_rules(RuleSet.model_validate({"rules": payload} if isinstance(payload, list) else payload))
                return _json(200, self.ruleset.model_dump(exclude_defaults=True))
            if key == ("GET", "options"):
                return _json(200, self.options.model_dump())
            if key == ("PUT", "options"):
                self.set_options(Options.model_validate_json(await request.read() or b"{}"))
                return _json(200, self.options.model_dump())
            if key == ("GET", "log"):
                return _json(200, [e.model_dump() for e in self.log])
            if key == ("DELETE", "log"):
                self.log.clear()
                self.stats.clear()
                return web.Response(status=204)
            if key == ("GET", "stats"):
                return _json(200, self.stats_view())
        except ValueError as exc:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"no control endpoint {request.method} {request.path}"})


def serve(app: FaultProxyApp, port: int) -> None:
    """Serve on 127.0.0.1:port until SIGTERM/SIGINT."""
    import uvloop  # a quarter less CPU per request than the stock loop

    web.run_app(app.web_app(), host="127.0.0.1", port=port, access_log=None, print=None, shutdown_timeout=2,
                loop=uvloop.new_event_loop())


def _free_port() -> int:
    # lethe.devstack is imported only by the side that manages the process: it pulls in
    # temporalio and scim2_models, 1.5 s of start-up the proxy process has no use for.
    from lethe.devstack import free_port

    return free_port()


@dataclass
class FaultProxy:
    """A fault proxy subprocess on loopback, with a typed client for its control API."""

    upstream: str
    port: int = field(default_factory=_free_port)
    rate_limit: int | None = None
    rate_window_s: float = 1.0
    latency_ms: float = 0.0
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, rules: list[Rule | dict[str, Any]] | None = None, seed: int = 0) -> FaultProxy:
        from lethe.devstack import wait_for_port

        args = [sys.executable, "-m", "lethe.faultproxy", "--port", str(self.port),
                "--upstream", check_loopback(self.upstream), "--latency-ms", str(self.latency_ms)]
        if self.rate_limit:
            args += ["--rate-limit", str(self.rate_limit), "--rate-window", str(self.rate_window_s)]
        if self.log_file:
            args += ["--log", str(self.log_file)]
        # Its stderr is kept only to explain a failed start; errors later are not expected.
        with tempfile.TemporaryFile() as stderr:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 20
            while True:
                try:
                    wait_for_port(self.port, timeout=0.5)
                    break
                except TimeoutError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        stderr.seek(0)
                        raise RuntimeError(f"fault proxy did not start: {stderr.read().decode(errors='replace')}") from None
        if rules:
            self.set_rules(rules, seed)
        return self

    def stop(self) -> None:
        from lethe.devstack import stop_process

        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None:
            stop_process(self.process)

    def _control(self, method: str, what: str, payload: Any = None) -> Any:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url + CONTROL_PREFIX, timeout=10)
        response = self._client.request(method, what, json=payload)
        if response.status_code >= 400:
            raise ValueError(f"fault proxy refused {method} {what}: {response.text}")
        return response.json() if response.content else None

    def set_rules(self, rules: list[Rule | dict[str, Any]], seed: int = 0) -> None:
        """Replace the rules; their `times` counters and the RNG start over."""
        dumped = [r.model_dump(exclude_defaults=True) if isinstance(r, Rule) else r for r in rules]
        self._control("PUT", "rules", {"seed": seed, "rules": dumped})

    def set_options(self, latency_ms: float = 0.0, rate_limit: int | None = None, rate_window_s: float = 1.0) -> None:
        options = Options(latency_ms=latency_ms, rate_limit=rate_limit, rate_window_s=rate_window_s)
        self._control("PUT", "options", options.model_dump())

    def reset(self) -> None:
        """No rules, the options given at construction, an empty log."""
        self.set_rules([])
        self.set_options(self.latency_ms, self.rate_limit, self.rate_window_s)
        self.clear_log()

    def log(self) -> list[LogEntry]:
        return [LogEntry.model_validate(e) for e in self._control("GET", "log")]

    def clear_log(self) -> None:
        self._control("DELETE", "log")

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "stats")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lethe.faultproxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    parser.add_argument("--upstream", required=True, help="base URL on loopback, e.g. http://127.0.0.1:8001")
    parser.add_argument("--rules", type=Path, help='JSON file: {"seed": 0, "rules": [...]} or a list of rules')
    parser.add_argument("--rate-limit", type=int, help="requests per window (1 s); the excess gets 429 + Retry-After")
    parser.add_argument("--rate-window", type=float, default=1.0, help="the rate limit's window in seconds")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every proxied request")
    parser.add_argument("--log", type=Path, help="append every log entry to FILE as a JSON line")
    args = parser.parse_args(argv)
    try:
        options = Options(latency_ms=args.latency_ms, rate_limit=args.rate_limit, rate_window_s=args.rate_window)
        app = FaultProxyApp(args.upstream, options, args.log)
        if args.rules:
            payload = json.loads(args.rules.read_text())
            app.set_rules(RuleSet.model_validate({"rules": payload} if isinstance(payload, list) else payload))
    except (ValueError, OSError) as exc:  # pydantic's ValidationError is a ValueError
        parser.error(str(exc))
    serve(app, args.port)


if __name__ == "__main__":
    main()
