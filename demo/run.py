"""`make demo`: the whole pipeline on this machine, with real parts.

Starts the Temporal dev server (UI on :8233), three scim2-server instances seeded with
people, and the Lethe worker; forgets one person end to end through the CLI; prints the
certificate and the UI link. Runs until Ctrl-C, or exits and cleans up with --once.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo import crm  # noqa: E402
from lethe.devstack import Person, ScimServer, stop_process, temporal_dev_server_args, wait_for_port  # noqa: E402
from lethe.devstack import ErasureJobServer  # noqa: E402

STATE = ROOT / "demo" / ".state"
TEMPORAL_PORT, UI_PORT = 7233, 8233
PEPPER = "demo-pepper-not-for-production-use"
# Each system finds the person by its own attribute; in all three it holds the work email.
SYSTEMS = {"chat": "userName", "crm": "emails", "wiki": "emails"}
PEOPLE = [
    Person(f"{first}.{last}@example.com".lower(), f"{first}.{last}@example.com".lower(), first, last, f"E{1001 + n}")
    for n, (first, last) in enumerate(
        [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Edsger", "Dijkstra"), ("Barbara", "Liskov")]
    )
]
LEAVER = PEOPLE[0]


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


WIKI_TOKEN = STATE / "wiki-token"  # the wiki reads its token from a file: the demo breaks, then fixes it


def write_config(servers: dict[str, ScimServer], vendor: ErasureJobServer) -> Path:
    lines = [
        "[temporal]",
        f'address = "127.0.0.1:{TEMPORAL_PORT}"',
        f'ui_url = "http://127.0.0.1:{UI_PORT}"',
        "[ledger]",
        f'url = "sqlite:///{STATE / "ledger.db"}"',
    ]
    for name, server in servers.items():
        token = f'token_file = "{WIKI_TOKEN}"' if name == "wiki" else 'token_env = "DEMO_SCIM_TOKEN"'
        lines += [
            "[[systems]]",
            f'name = "{name}"',
            'kind = "scim"',
            f'url = "{server.url}"',
            token,
            f'match = "{SYSTEMS[name]}"',
            'confirm = { every = "1s", within = "1h" }',
        ]
    lines += [
        "[[systems]]",
        'name = "analytics"',
        'kind = "erasure-job"',
        f'url = "{vendor.url}"',
        'token_env = "DEMO_VENDOR_TOKEN"',
        'start = { path = "/v1/erasures", body = { user = { email = "{identifier}" } }, job_id = "id" }',
        'status = { path = "/v1/erasures/{job_id}", field = "state", done = ["completed"], failed = ["failed"] }',
        'confirm = { every = "1s", within = "1h" }',
    ]
    path = STATE / "lethe.toml"
    path.write_text("\n".join(lines) + "\n" + crm.CONFIG)
    return path


def lethe(env: dict[str, str], *args: str) -> int:
    """Run the real CLI, echoing the command as an operator would type it."""
    print(f"$ python starter.py {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, str(ROOT / "starter.py"), *args], env=env, cwd=STATE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit and clean up after the demo case")
    args = parser.parse_args()
    STATE.mkdir(parents=True, exist_ok=True)
    for stale in STATE.glob("ledger.db*"):
        stale.unlink()

    with ExitStack() as stack:
        say(f"Temporal dev server on 127.0.0.1:{TEMPORAL_PORT}, UI on http://127.0.0.1:{UI_PORT}")
        temporal = subprocess.Popen(temporal_dev_server_args(TEMPORAL_PORT, UI_PORT), stdout=subprocess.DEVNULL)
        stack.callback(stop_process, temporal)
        wait_for_port(TEMPORAL_PORT, timeout=60)

        say("three SCIM 2.0 systems (scim2-server), seeded with people")
        servers = {name: ScimServer(token="demo-token").start() for name in SYSTEMS}
        for server in servers.values():
            stack.callback(server.stop)
        ids = {name: server.seed(PEOPLE) for name, server in servers.items()}
        for name, server in servers.items():
            print(f"  {name:<9} {server.url}  {len(server.users())} accounts, matched by {SYSTEMS[name]}")
        vendor = ErasureJobServer(token="demo-vendor-token", delay="3s").start()
        stack.callback(vendor.stop)
        print(f"  analytics {vendor.url}  a vendor API that erases asynchronously (jobs finish after 3s)")
        crm_url = crm.create(STATE / "crm.db", PEOPLE)
        print(f"  crm db    {STATE / 'crm.db'}  tickets and invoices to keep, anonymized")

        config = write_config(servers, vendor)
        WIKI_TOKEN.write_text("an-expired-token")
        env = {
            **os.environ,
            "LETHE_CONFIG": str(config),
            "LETHE_PEPPER": PEPPER,
            "DEMO_SCIM_TOKEN": "demo-token",
            "DEMO_VENDOR_TOKEN": "demo-vendor-token",
            "DEMO_CRM_URL": crm_url,
        }
        say("the Lethe worker")
        worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=STATE)
        stack.callback(stop_process, worker)

        say(f"forget {LEAVER.given_name} {LEAVER.family_name}, a leaver (no grace period for the demo)")
        code = lethe(env, "forget", LEAVER.email, "--reason", "leaver", "--grace", "0", "--wait")
        if code == 3:
            say("the wiki refused its token: the case waits for an operator. Fix the token, then resolve")
            WIKI_TOKEN.write_text("demo-token")
            lethe(env, "resolve", LEAVER.email, "--system", "wiki", "--action", "retry", "--note", "wiki token rotated", "--operator", "demo-operator")
            code = lethe(env, "status", LEAVER.email, "--wait")
        if code != 0:
            print(f"demo: the case did not complete (exit {code})", file=sys.stderr)
            return code

        say("what the systems say now (read from the SCIM servers, not from Lethe)")
        for name, server in servers.items():
            status = server.get(ids[name][LEAVER.user_name]).status_code
            print(f"  {name:<5} GET /Users/<id> -> {status}; {len(server.users())} accounts remain")
        print(f"  crm   rows still naming {LEAVER.given_name}: {crm.rows_naming(crm_url, LEAVER.email)} (of 5 before)")

        say("the certificate (names no one)")
        lethe(env, "certificate", LEAVER.email, "--format", "md")
        lethe(env, "certificate", LEAVER.email, "--verify")
        say("the schedules: retention purges and reconciliation sweeps (Temporal UI, Schedules)")
        lethe(env, "schedule", "apply")
        lethe(env, "schedule", "trigger", "retention")
        time.sleep(3)
        lethe(env, "schedule", "status")
        lethe(env, "report", "--since", "1d")
        say(f"watch the case in the Temporal UI: http://127.0.0.1:{UI_PORT}/namespaces/default/workflows")

        if not args.once:
            print("\nRunning; try `python starter.py forget alan.turing@example.com --reason leaver --grace 0` "
                  f"with LETHE_CONFIG={config}. Ctrl-C to stop.", flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        say("stopping everything the demo started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
