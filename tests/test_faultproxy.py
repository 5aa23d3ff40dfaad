"""The fault proxy in front of a real scim2-server: transparent by default, each rule
misbehaves as documented, the rate limit holds per window, and the log keeps no query."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from scim2_models import Context

from lethe.devstack import Person, ScimServer, free_port, wait_for_port
from lethe.faultproxy import SCIM_ERROR, FaultProxy, LogEntry, RateLimiter, main, max_in_window

SCIM_JSON = {"Content-Type": "application/scim+json"}


@pytest.fixture(scope="module")
def scim() -> Iterator[ScimServer]:
    server = ScimServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy_log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faultproxy") / "proxy.jsonl"


@pytest.fixture(scope="module")
def proxy(scim: ScimServer, proxy_log_file: Path) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(upstream=scim.url, log_file=proxy_log_file).start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


@pytest.fixture(autouse=True)
def clean_proxy(request: pytest.FixtureRequest) -> None:
    if "proxy" in request.fixturenames:
        request.getfixturevalue("proxy").reset()


def via(proxy: FaultProxy, scim: ScimServer) -> httpx.Client:
    return httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {scim.token}"}, timeout=10)


def person(tag: str) -> Person:
    return Person(f"user.{tag}", f"{tag}@example.com", f"Given{tag}", f"Family{tag}", f"ext-{tag}")


def create(client: httpx.Client, who: Person) -> httpx.Response:
    body = who.as_user().model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    return client.post("/Users", json=body, headers=SCIM_JSON)


def normalized(response: httpx.Response, who: Person, uid: str) -> Any:
    """The body with what differs between two users of the same shape taken out."""
    if not response.content:
        return None
    text = response.text
    for value in (uid, who.user_name, who.email, who.given_name, who.family_name, who.external_id):
        text = text.replace(value, "<who>")
    body = json.loads(text)
    for resource in [body, *body.get("Resources", [])]:
        resource.pop("id", None)
        resource.pop("meta", None)
    return body


def test_forwarding_is_transparent(scim: ScimServer, proxy: FaultProxy) -> None:
    direct_person, proxied_person = person("fp-direct"), person("fp-proxied")
    seen: dict[str, list[tuple[int, str, Any]]] = {}
    for name, who, client in (("direct", direct_person, scim.client()), ("proxy", proxied_person, via(proxy, scim))):
        steps = []
        with client:
            created = create(client, who)
            uid = created.json()["id"]
            responses = [
                created,
                client.get(f"/Users/{uid}"),
                client.get("/Users", params={"filter": f'userName eq "{who.user_name}"'}),
                client.patch(f"/Users/{uid}", headers=SCIM_JSON, json={
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": False}],
                }),
                client.get(f"/Users/{uid}"),
                client.delete(f"/Users/{uid}"),
                client.get(f"/Users/{uid}"),
            ]
            for response in responses:
                steps.append((response.status_code, response.headers.get("content-type", ""), normalized(response, who, uid)))
        seen[name] = steps
        if name == "proxy":
            # Host is relayed, so the server's links lead back through the proxy.
            assert created.json()["meta"]["location"].startswith(proxy.url)
            assert scim.get(uid).status_code == 404

    assert [s[0] for s in seen["proxy"]] == [201, 200, 200, 204, 200, 204, 404]
    assert seen["proxy"] == seen["direct"]
    assert seen["proxy"][2][2]["totalResults"] == 1
    assert seen["proxy"][4][2]["active"] is False
    log = proxy.log()
    assert [(e.method, e.status, e.forwarded, e.rule) for e in log] == [
        ("POST", 201, True, None), ("GET", 200, True, None), ("GET", 200, True, None),
        ("PATCH", 204, True, None), ("GET", 200, True, None), ("DELETE", 204, True, None), ("GET", 404, True, None),
    ]


def test_errors_and_headers_of_the_upstream_are_relayed(scim: ScimServer, proxy: FaultProxy) -> None:
    wrong = {"Authorization": "Bearer not-the-token"}
    direct = httpx.get(f"{scim.url}/Users", headers=wrong)
    proxied = httpx.get(f"{proxy.url}/Users", headers=wrong)
    assert proxied.status_code == direct.status_code == 401
    assert proxied.content == direct.content
    assert proxied.headers["content-type"] == direct.headers["content-type"]


def test_status_rule_answers_with_retry_after_for_its_first_n_matches(scim: ScimServer, proxy: FaultProxy) -> None:
    proxy.set_rules([{"name": "flaky", "method": "GET", "path": "^/Users$", "status": 503, "retry_after": 2, "times": 2}])
    with via(proxy, scim) as client:
        other_path = client.get("/ServiceProviderConfig")
        other_method = create(client, person("fp-status"))
        answers = [client.get("/Users") for _ in range(3)]

    assert other_path.status_code == 200 and other_method.status_code == 201
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["retry-after"] == "2"
    assert answers[0].headers["content-type"].startswith("application/scim+json")
    assert answers[0].json()["schemas"] == [SCIM_ERROR] and answers[0].json()["status"] == "503"
    log = proxy.log()[2:]
    assert [(e.status, e.forwarded, e.rule) for e in log] == [(503, False, "flaky"), (503, False, "flaky"), (200, True, None)]


def test_rule_matches_a_query_substring_and_rules_apply_in_order(scim: ScimServer, proxy: FaultProxy) -> None:
    proxy.set_rules([
        {"name": "bob", "query": 'userName eq "bob"', "status": 500},
        {"name": "everyone", "path": "^/Users", "status": 502},
    ])
    with via(proxy, scim) as client:
        bob = client.get("/Users", params={"filter": 'userName eq "bob"'})
        carol = client.get("/Users", params={"filter": 'userName eq "carol"'})
    assert (bob.status_code, carol.status_code) == (500, 502)
    assert [e.rule for e in proxy.log()] == ["bob", "everyone"]


def test_probability_is_repeatable_with_the_same_seed(scim: ScimServer, proxy: FaultProxy) -> None:
    def pattern() -> list[int]:
        proxy.set_rules([{"path": "^/ServiceProviderConfig$", "probability": 0.5, "status": 500}], seed=7)
        with via(proxy, scim) as client:
            return [client.get("/ServiceProviderConfig").status_code for _ in range(12)]

    first, second = pattern(), pattern()
    assert first == second
    assert set(first) == {200, 500}


def test_drop_closes_the_connection_without_forwarding(scim: ScimServer, proxy: FaultProxy) -> None:
    uid = scim.seed([person("fp-drop")])["user.fp-drop"]
    proxy.set_rules([{"method": "DELETE", "drop": True, "times": 1}])
    with via(proxy, scim) as client:
        with pytest.raises(httpx.TransportError):
            client.delete(f"/Users/{uid}")
        assert scim.get(uid).status_code == 200
        assert client.delete(f"/Users/{uid}").status_code == 204
    first = proxy.log()[0]
    assert (first.status, first.forwarded, first.rule) == (None, False, "drop before")
    assert proxy.stats()["dropped"] == 1


def test_drop_after_forwarding_loses_only_the_answer(scim: ScimServer, proxy: FaultProxy) -> None:
    uid = scim.seed([person("fp-drop-after")])["user.fp-drop-after"]
    proxy.set_rules([{"method": "DELETE", "drop": "after"}])
    with via(proxy, scim) as client, pytest.raises(httpx.TransportError):
        client.delete(f"/Users/{uid}")
    assert scim.get(uid).status_code == 404
    entry = proxy.log()[0]
    assert (entry.status, entry.forwarded, entry.upstream_status) == (None, True, 204)


def test_delay_rule_and_global_latency_slow_requests_down(scim: ScimServer, proxy: FaultProxy) -> None:
    proxy.set_rules([{"path": "^/ServiceProviderConfig$", "delay_ms": 300}])
    with via(proxy, scim) as client:
        started = time.monotonic()
        delayed = client.get("/ServiceProviderConfig")
        delayed_s = time.monotonic() - started
        client.get("/Users", params={"count": 1})
        proxy.set_rules([])
        proxy.set_options(latency_ms=200)
        started = time.monotonic()
        slow = client.get("/Users", params={"count": 1})
        slow_s = time.monotonic() - started

    assert delayed.status_code == 200 and delayed_s >= 0.3
    assert slow.status_code == 200 and slow_s >= 0.2
    delayed_entry, plain_entry, slow_entry = proxy.log()
    assert delayed_entry.rule == "delay 300ms" and delayed_entry.forwarded and delayed_entry.ms >= 300
    assert plain_entry.rule is None and plain_entry.ms < 300
    assert slow_entry.ms >= 200


def test_lie_answers_204_and_leaves_the_user_upstream(scim: ScimServer, proxy: FaultProxy) -> None:
    uid = scim.seed([person("fp-lie")])["user.fp-lie"]
    proxy.set_rules([{"method": "DELETE", "path": "^/Users/", "lie": True}])
    with via(proxy, scim) as client:
        answer = client.delete(f"/Users/{uid}")
    assert answer.status_code == 204
    assert scim.get(uid).status_code == 200
    entry = proxy.log()[0]
    assert (entry.forwarded, entry.rule) == (False, "lie 204")


def test_unfilter_answers_a_filtered_search_with_every_user(scim: ScimServer, proxy: FaultProxy) -> None:
    scim.seed([person(f"fp-unfilter-{i}") for i in range(3)])
    wanted = {"filter": 'userName eq "user.fp-unfilter-1"', "count": 2}
    everyone = len(scim.users())
    with scim.client() as direct:
        assert direct.get("/Users", params=wanted).json()["totalResults"] == 1
    proxy.set_rules([{"method": "GET", "path": "^/Users$", "unfilter": True}])
    with via(proxy, scim) as client:
        page = client.get("/Users", params=wanted).json()
    assert page["totalResults"] == everyone >= 3
    assert page["itemsPerPage"] == 2  # the other parameters went through untouched


def test_rate_limit_answers_429_and_never_forwards_more_than_n_per_window(scim: ScimServer, proxy: FaultProxy) -> None:
    proxy.set_options(rate_limit=5)
    statuses: list[int] = []
    retry_afters: list[str] = []
    give_up = time.monotonic() + 5

    def worker(client: httpx.Client) -> None:
        # Until more than one window's worth got through: the window has to slide.
        while statuses.count(200) < 8 and time.monotonic() < give_up:
            answer = client.get("/ServiceProviderConfig")
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                retry_afters.append(answer.headers["retry-after"])
            time.sleep(0.005)

    clients = [via(proxy, scim) for _ in range(2)]
    workers = [threading.Thread(target=worker, args=(client,)) for client in clients]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    for client in clients:
        client.close()

    log = proxy.log()
    forwarded = [e for e in log if e.forwarded]
    assert statuses.count(200) >= 8, statuses
    assert 429 in statuses and all(int(r) >= 1 for r in retry_afters)
    assert max_in_window(log) <= 5
    assert statuses.count(200) == len(forwarded)
    stats = proxy.stats()
    assert stats["rate_limited"] == stats["by_status"]["429"] == statuses.count(429)


def test_max_in_window_and_rate_limiter() -> None:
    def entry(t: float, forwarded: bool = True) -> LogEntry:
        return LogEntry(seq=0, mono=t, wall=t, method="GET", path="/", status=200, forwarded=forwarded, ms=0)

    entries = [entry(t) for t in (0.0, 0.5, 0.99, 1.0, 1.2)] + [entry(0.6, forwarded=False)]
    assert max_in_window(entries) == 4
    assert max_in_window(entries, forwarded_only=False) == 5
    assert max_in_window(entries, window_s=0.25) == 3

    limiter = RateLimiter(2)
    assert [limiter.admit(t) for t in (0.0, 0.1)] == [0.0, 0.0]
    assert limiter.admit(0.5) == pytest.approx(0.5)
    assert limiter.admit(1.0) == 0.0


def test_log_holds_no_query_string_and_no_body(scim: ScimServer, proxy: FaultProxy, proxy_log_file: Path) -> None:
    secret = person("fp-secret-4242")
    with via(proxy, scim) as client:
        assert create(client, secret).status_code == 201
        client.get("/Users", params={"filter": f'emails.value eq "{secret.email}"'})
        client.get("/Users", params={"filter": f'userName eq "{secret.user_name}"'})

    served = httpx.get(f"{proxy.url}/_proxy/log").text
    written = proxy_log_file.read_text()
    assert [e.path for e in proxy.log()] == ["/Users", "/Users", "/Users"]
    for text in (served, written):
        assert "fp-secret-4242" not in text
        assert "filter=" not in text and "?" not in text and " eq " not in text
    assert len(written.splitlines()) >= 3


def test_bad_rules_are_refused_with_the_field_named_and_change_nothing(proxy: FaultProxy) -> None:
    proxy.set_rules([{"name": "keep", "status": 500}])
    with pytest.raises(ValueError, match="retry_after goes with status"):
        proxy.set_rules([{"lie": 204, "retry_after": 3}])
    with pytest.raises(ValueError, match="one action"):
        proxy.set_rules([{"status": 500, "drop": True}])
    with pytest.raises(ValueError, match="probability"):
        proxy.set_rules([{"status": 500, "probability": 2}])
    assert httpx.get(f"{proxy.url}/_proxy/rules").json()["rules"] == [{"name": "keep", "status": 500}]


def test_cli_refuses_bad_input_before_listening(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_rules = tmp_path / "bad.json"
    bad_rules.write_text(json.dumps([{"path": "^/Users", "status": 99}]))
    for args, message in (
        (["--upstream", "http://10.0.0.1:80"], "not on loopback"),
        (["--upstream", "http://127.0.0.1:9", "--rules", str(bad_rules)], "rules.0.status"),
        (["--upstream", "http://127.0.0.1:9", "--rules", str(tmp_path / "missing.json")], "missing.json"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["--port", "9", *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(ValueError, match="not on loopback"):
        FaultProxy(upstream="http://192.0.2.1:8080").start()


def test_cli_loads_a_rules_file_and_a_rate_limit(scim: ScimServer, tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"seed": 3, "rules": [{"method": "GET", "path": "^/Users$", "status": 429, "retry_after": 1}]}))
    port = free_port()
    cli = [sys.executable, "-m", "lethe.faultproxy", "--port", str(port), "--upstream", scim.url]
    process = subprocess.Popen([*cli, "--rules", str(rules), "--rate-limit", "50"])
    fault_proxy = FaultProxy(upstream=scim.url, port=port, process=process)
    try:
        wait_for_port(port)
        answer = httpx.get(f"{fault_proxy.url}/Users", headers={"Authorization": f"Bearer {scim.token}"})
        assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
        assert httpx.get(f"{fault_proxy.url}/_proxy/options").json()["rate_limit"] == 50
    finally:
        fault_proxy.stop()
