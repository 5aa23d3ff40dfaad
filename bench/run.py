"""`make bench`: Lethe against the rate-limit bound and two baselines, on this machine.

Mass offboarding (N leavers x M systems, grace 0) by Lethe, by an asyncio script with token
buckets and by a sequential script, each on fresh copies of the same seeded systems; time to
revoke (one case at a time, many slow systems); efficiency at other N. Prints one table, writes
bench/results/latest.json and the table into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.entry import run_main, say  # noqa: E402
from bench.loadwatch import LoadWatch  # noqa: E402
from bench.mass import MassParams, MassResult, run_baseline, run_lethe  # noqa: E402
from bench.profile import summarise  # noqa: E402
from bench.report import Row, optional_path, render, replace_section, verdict  # noqa: E402
from bench.revoke import RevokeParams, RevokeResult, run_revoke  # noqa: E402
from lethe.logs import quiet_url_loggers  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_EFFICIENCY = {1000: 0.85, 4000: 0.8}
TARGET_429_SHARE = 0.005
TARGET_VS_ASYNC = 1.15
TARGET_P50_SLACK_MS, TARGET_P95_SLACK_MS = 150, 400
TARGET_RSS_MB, TARGET_RSS_AT = 350, 4000
TARGET_EVENTS_PER_SYSTEM = 20


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0])
    mass = parser.add_argument_group("mass offboarding")
    mass.add_argument("--n", type=int, default=500, help="leavers (default 500)")
    mass.add_argument("--systems", type=int, default=4, help="SCIM systems (default 4)")
    mass.add_argument("--latency-ms", type=float, default=20, help="added by each system's proxy (default 20)")
    mass.add_argument("--rate-limit", type=int, default=25, help="requests/s per system, enforced with 429 (default 25)")
    mass.add_argument("--bystanders", type=int, default=50, help="accounts that must stay untouched (default 50)")
    mass.add_argument("--history-sample", type=int, default=20, help="case histories fetched to count events")
    mass.add_argument("--sequential-sample", type=int, default=100,
                      help="run the sequential baseline on the first K leavers and scale linearly (0: all N)")
    mass.add_argument("--async-final-find", action=argparse.BooleanOptionalAction, default=True,
                      help="asyncio baseline also checks that nobody matches at the end, as Lethe does (default on)")
    mass.add_argument("--sequential-final-find", action=argparse.BooleanOptionalAction, default=False,
                      help="sequential baseline does that check too (default off: find, patch, delete, confirm)")
    revoke = parser.add_argument_group("time to revoke")
    revoke.add_argument("--revoke-cases", type=int, default=50)
    revoke.add_argument("--revoke-systems", type=int, default=10)
    revoke.add_argument("--revoke-latency-ms", type=float, default=50)
    revoke.add_argument("--revoke-rate-limit", type=int, default=25)
    parser.add_argument("--scaling", default="250,1000", help="more N for Lethe's efficiency, comma-separated (default 250,1000)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: lethe,async,sequential,revoke,scaling")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the main Lethe run")
    parser.add_argument("--dynamic-config", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to the Temporal dev server (--dynamic-config-value), repeatable")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--markdown", type=optional_path, default=ROOT / "bench" / "RESULTS.md",
                        help="file whose bench section gets the table ('' to skip)")
    return parser.parse_args()


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def mass_rows(lethe: MassResult | None, baselines: dict[str, MassResult], p: MassParams) -> list[Row]:
    rows: list[Row] = []
    if lethe is not None:
        per_system = 5 * lethe.n
        forwarded = ", ".join(str(v) for v in lethe.forwarded.values())
        rows += [
            (f"Lethe wall, N={lethe.n} x {p.systems} systems", _fmt_s(lethe.wall_s), "", ""),
            ("lower bound: 5 req/account x N / rate limit", _fmt_s(lethe.bound_s), "", ""),
            ("requests forwarded per system (expected 5N)", f"{forwarded} (expected {per_system})", "", ""),
            (f"efficiency, N={lethe.n}", f"{lethe.efficiency:.2f}", "", ""),
            ("429s received", f"{lethe.rate_limited} of {lethe.requests} ({100 * lethe.rate_limited_share:.2f}%)",
             "<= 0.5%", verdict(lethe.rate_limited_share <= TARGET_429_SHARE)),
            ("start to all access revoked (last PATCH)", _fmt_s(lethe.revoke_all_s), "", ""),
            ("starting all cases took", _fmt_s(lethe.start_s), "", ""),
            ("cases certified complete / accounts left", f"{lethe.certified_complete} / {lethe.accounts_left}",
             f"{lethe.n} / 0", verdict(lethe.certified_complete == lethe.n and lethe.accounts_left == 0)),
            (f"worker peak RSS, N={lethe.n}", f"{lethe.worker_peak_rss_mb:.0f} MB", "", ""),
        ]
        if lethe.history_events:
            mean = sum(lethe.history_events) / len(lethe.history_events)
            per = mean / p.systems
            rows.append((f"history events per case (mean of {len(lethe.history_events)}), per system",
                         f"{mean:.0f}, {per:.1f}/system", f"< {TARGET_EVENTS_PER_SYSTEM}/system",
                         verdict(per < TARGET_EVENTS_PER_SYSTEM)))
    for kind, base in baselines.items():
        label = f"{kind} baseline wall ({base.requests_per_account} req/account)"
        value = _fmt_s(base.wall_at_scale_s)
        if base.scale_to:
            value += f" (measured {base.wall_s:.1f} s on {base.n}, scaled to {base.scale_to})"
        rows.append((label, value, "", ""))
        rows.append((f"{kind} baseline efficiency / 429s", f"{base.bound_s / base.wall_s:.2f} / {base.rate_limited}", "", ""))
        if lethe is not None:
            ratio = lethe.wall_s / base.wall_at_scale_s
            target = f"<= {TARGET_VS_ASYNC}" if kind == "asyncio" else ""
            rows.append((f"Lethe wall / {kind} wall", f"{ratio:.2f}", target,
                         verdict(ratio <= TARGET_VS_ASYNC) if kind == "asyncio" else ""))
    return rows


def revoke_rows(result: RevokeResult) -> list[Row]:
    p50_target, p95_target = result.bound_ms + TARGET_P50_SLACK_MS, result.bound_ms + TARGET_P95_SLACK_MS
    title = f"time to revoke ({result.cases} cases, {result.systems} systems x {result.latency_ms:.0f} ms)"
    return [
        (f"{title}: bound", f"{result.bound_ms:.0f} ms (slowest find + patch)", "", ""),
        ("time to revoke p50", f"{result.p50_ms:.0f} ms", f"<= {p50_target:.0f} ms", verdict(result.p50_ms <= p50_target)),
        ("time to revoke p95", f"{result.p95_ms:.0f} ms", f"<= {p95_target:.0f} ms", verdict(result.p95_ms <= p95_target)),
    ]


def scaling_rows(results: list[MassResult]) -> list[Row]:
    rows: list[Row] = []
    for r in sorted(results, key=lambda r: r.n):
        target = TARGET_EFFICIENCY.get(r.n)
        rows.append((f"scaling N={r.n}: wall / bound / efficiency",
                     f"{r.wall_s:.1f} s / {r.bound_s:.1f} s / {r.efficiency:.2f}",
                     f">= {target}" if target else "", verdict(r.efficiency >= target) if target else ""))
        rows.append((f"scaling N={r.n}: 429s, worker peak RSS",
                     f"{100 * r.rate_limited_share:.2f}%, {r.worker_peak_rss_mb:.0f} MB",
                     f"<= 0.5%{f', <= {TARGET_RSS_MB} MB' if r.n == TARGET_RSS_AT else ''}",
                     verdict(r.rate_limited_share <= TARGET_429_SHARE
                             and (r.n != TARGET_RSS_AT or (r.worker_peak_rss_mb or 0) <= TARGET_RSS_MB))))
    return rows


def cpu_rows(label: str, cpu: dict[str, float], wall: float) -> list[Row]:
    """CPU seconds per process kind over the run, and the share of the machine they took."""
    groups: dict[str, float] = {}
    for name, seconds in cpu.items():
        kind = name.split(" ")[0] if name.startswith(("scim2-server", "faultproxy")) else name
        groups[kind] = groups.get(kind, 0.0) + seconds
    total = sum(groups.values())
    parts = ", ".join(f"{kind} {seconds:.0f}" for kind, seconds in sorted(groups.items(), key=lambda kv: -kv[1]))
    share = total / (wall * (os.cpu_count() or 1))
    return [(f"CPU s, {label}", f"{parts} (total {total:.0f} = {100 * share:.0f}% of the cores)", "", "")]


async def main() -> int:
    args = arguments()
    quiet_url_loggers()
    skip = set(filter(None, args.skip.split(",")))
    params = MassParams(n=args.n, systems=args.systems, latency_ms=args.latency_ms, rate_limit=args.rate_limit,
                        bystanders=args.bystanders, history_sample=args.history_sample,
                        dynamic_config=tuple(args.dynamic_config))
    scaling_n = [int(n) for n in args.scaling.split(",") if n.strip()]
    report: dict[str, object] = {"started": datetime.now().isoformat(timespec="seconds"), "args": vars(args) | {
        "output": str(args.output), "markdown": str(args.markdown)}}
    rows: list[Row] = []
    lethe: MassResult | None = None
    baselines: dict[str, MassResult] = {}
    scaling: list[MassResult] = []
    revoke: RevokeResult | None = None
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lethe-bench-") as tmp, LoadWatch() as load:
        work = Path(tmp)
        if "lethe" not in skip:
            say(f"Lethe: {params.n} leavers x {params.systems} systems")
            profile = RESULTS / "profile-worker.txt" if args.profile else None
            lethe = await run_lethe(params, work / "lethe", profile)
            say(f"  {lethe.wall_s:.1f} s (bound {lethe.bound_s:.1f} s)")
            if profile is not None:
                summary = summarise(profile, 25)
                (RESULTS / "profile-worker-summary.txt").write_text(summary + "\n")
                say("  worker profile: bench/results/profile-worker-summary.txt")
        if "async" not in skip:
            say("asyncio baseline")
            baselines["asyncio"] = await run_baseline("asyncio", params, args.async_final_find)
            say(f"  {baselines['asyncio'].wall_s:.1f} s")
        if "sequential" not in skip:
            say("sequential baseline")
            baselines["sequential"] = await run_baseline("sequential", params, args.sequential_final_find,
                                                         args.sequential_sample or None)
            say(f"  {baselines['sequential'].wall_s:.1f} s")
        if "revoke" not in skip:
            say(f"time to revoke: {args.revoke_cases} cases, {args.revoke_systems} systems")
            revoke = await run_revoke(RevokeParams(args.revoke_cases, args.revoke_systems, args.revoke_latency_ms,
                                                   args.revoke_rate_limit, tuple(args.dynamic_config)), work / "revoke")
            say(f"  p50 {revoke.p50_ms:.0f} ms, p95 {revoke.p95_ms:.0f} ms, bound {revoke.bound_ms:.0f} ms")
        if "scaling" not in skip:
            if lethe is not None:
                scaling.append(lethe)
            for n in scaling_n:
                if lethe is not None and n == lethe.n:
                    continue
                say(f"scaling: Lethe with N={n}")
                result = await run_lethe(MassParams(**{**asdict(params), "n": n}), work / f"scale-{n}")
                say(f"  {result.wall_s:.1f} s (bound {result.bound_s:.1f} s)")
                scaling.append(result)
    rows += mass_rows(lethe, baselines, params)
    if lethe is not None:
        rows += cpu_rows(f"Lethe N={lethe.n}", lethe.cpu_s, lethe.wall_s)
    if "asyncio" in baselines:
        rows += cpu_rows("asyncio baseline", baselines["asyncio"].cpu_s, baselines["asyncio"].wall_s)
    if revoke is not None:
        rows += revoke_rows(revoke)
        rows += cpu_rows("time to revoke", revoke.cpu_s, revoke.phase_s)
    rows += scaling_rows([r for r in scaling if r is not lethe or len(scaling) > 1])
    header = (f"Lethe bench, {report['started']}, {load.summary()}; mass: {params.systems} systems x "
              f"{params.latency_ms:.0f} ms, {params.rate_limit} req/s each, grace 0; total {time.monotonic() - began:.0f} s")
    table = render(rows)
    print(f"\n{header}\n\n{table}\n")
    report |= {
        "load": load.samples,
        "lethe": asdict(lethe) if lethe else None,
        "baselines": {k: asdict(v) for k, v in baselines.items()},
        "revoke": asdict(revoke) | {"p50_ms": revoke.p50_ms, "p95_ms": revoke.p95_ms} if revoke else None,
        "scaling": [asdict(r) | {"efficiency": r.efficiency} for r in scaling],
        "table": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.markdown:
        replace_section(args.markdown, "bench", f"{header}\n\n{table}\n", "make bench")
    return 0


if __name__ == "__main__":
    run_main(main, "bench")
