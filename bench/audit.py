"""What the hash chain costs a writer, and how fast `audit verify` walks a million events.

    .venv/bin/python bench/audit.py [--writes 2000] [--events 1000000] [--configs postgres,sqlite]

Each part runs in a child process with a fresh database of its own (a scratch PostgreSQL
database created here and dropped afterwards, or a temporary SQLite file), migrated:

- write: one audit event per transaction, as a request records one. Baseline: the same
  AuditEvent INSERT without the chain (what record_event did before: redaction, the row, in
  transaction.atomic; sequence and hashes filled with constants); against record_event (head
  row locked, hash computed, row inserted, head updated). Interleaved in rounds (ABBA), so a
  slow moment of the host hits both. Then the same with several writer threads at once: all
  on one org's chain (they queue on its head row) and each on its own org's chain.
- verify (PostgreSQL): a chain of --events events is computed with audit.chain and COPYed in,
  plus a chain of a tenth of that and an empty org. Baseline: reading the same rows through the
  same server-side cursor without checking (audit.verification.chain_rows). Then
  `manage.py audit verify --org ... --json` as its own process: its events/s and its peak RSS
  (from wait4), for the big chain, the small one and the empty org (Django alone), so "memory
  flat" is a comparison, not a claim.

It prints every figure, the ratios, the host's load average and a CPU calibration loop before
and after (bench/run_latency.py explains that). Timing belongs here, never in tests.
"""

from __future__ import annotations

import sys

# `python bench/<script>.py` puts bench/ first on sys.path, where this file would shadow the
# `audit` app (and bench/logging.py the standard library's logging).
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/bench")]

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.run_latency import (
    _INHERITED_BUT_OURS,
    BenchError,
    _create_database,
    _drop_database,
    cpu_calibration_ms,
)

CONFIGS = ("postgres", "sqlite")
VERIFY_TARGET = 100_000  # events/s over 1,000,000 events on PostgreSQL (issue #6)
ZERO_HASH = "0" * 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=2000, help="events per write variant")
    parser.add_argument("--rounds", type=int, default=10, help="ABBA rounds of the write test")
    parser.add_argument("--writers", type=int, default=4, help="threads in the concurrent test")
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events in the verified chain"
    )
    parser.add_argument("--repeat", type=int, default=2, help="verify measurements (interleaved)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="postgres, sqlite or both")
    parser.add_argument("--skip-verify", action="store_true", help="only the write cost")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (scratch databases are created there and dropped)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--child", choices=("write", "verify"), help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if set(configs) - set(CONFIGS) or args.writes < args.rounds * 2:
        parser.error("unknown config, or --writes smaller than 2 x --rounds")
    print(
        f"Audit chain: {args.writes} writes per variant in {args.rounds} rounds, "
        f"{args.writers} writer threads; verify over {args.events:,} events. "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {_load()}, CPU calibration {cpu_calibration_ms():.2f} ms",
        flush=True,
    )
    results: dict[str, Any] = {"write": {}, "verify": None}
    failed = False
    for config in configs:
        print(f"\n[write/{config}] ...", flush=True)
        try:
            results["write"][config] = run_child("write", config, args)
            print(format_writes(results["write"][config]), flush=True)
        except BenchError as exc:
            failed = True
            print(f"[write/{config}] FAILED: {exc}", flush=True)
    if "postgres" in configs and not args.skip_verify:
        print(f"\n[verify/postgres] loading {args.events:,} events ...", flush=True)
        try:
            results["verify"] = run_child("verify", "postgres", args)
            print(format_verify(results["verify"]), flush=True)
        except BenchError as exc:
            failed = True
            print(f"[verify/postgres] FAILED: {exc}", flush=True)
    print(f"\nload average {_load()}, CPU calibration {cpu_calibration_ms():.2f} ms", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


def _load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def run_child(kind: str, config: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"everesthood-bench-audit-{kind}-") as tmp:
        tmp_dir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in _INHERITED_BUT_OURS}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "EVERESTHOOD_ENV_FILE": "",
                "EVERESTHOOD_VAR_DIR": str(tmp_dir / "var"),
                # As in production: DEBUG keeps every query in memory, which would be measured.
                "DEBUG": "false",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32),
                "LOG_LEVEL": "WARNING",  # record_event logs a line per event; not measured here
            }
        )
        scratch_db = None
        if config == "postgres":
            scratch_db = f"everesthood_bench_{uuid.uuid4().hex[:8]}"
            _create_database(args.postgres, scratch_db)
            env["DATABASE_URL"] = f"{args.postgres.rstrip('/')}/{scratch_db}"
        result_file = tmp_dir / "result.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            *("--child", kind, "--config", config, "--result-file", str(result_file)),
            *("--writes", str(args.writes), "--rounds", str(args.rounds)),
            *("--writers", str(args.writers), "--events", str(args.events)),
            *("--repeat", str(args.repeat)),
        ]
        try:
            completed = subprocess.run(command, cwd=BASE_DIR, env=env, check=False)
            if completed.returncode != 0 or not result_file.exists():
                raise BenchError(f"child exited with status {completed.returncode}")
            return dict(json.loads(result_file.read_text(encoding="utf-8")))
        finally:
            if scratch_db is not None:
                _drop_database(args.postgres, scratch_db)


# --- child ---------------------------------------------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    if args.child == "write":
        result = measure_writes(writes=args.writes, rounds=args.rounds, writers=args.writers)
    else:
        result = measure_verify(events=args.events, repeat=args.repeat)
    result["config"] = args.config
    args.result_file.write_text(json.dumps(result), encoding="utf-8")
    return 0


def _summary(samples_us: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_us, n=100, method="inclusive")
    return {
        "p50_us": statistics.median(samples_us),
        "p95_us": cuts[94],
        "mean_us": statistics.fmean(samples_us),
        "per_s": 1e6 / statistics.fmean(samples_us),
    }


def measure_writes(*, writes: int, rounds: int, writers: int) -> dict[str, Any]:
    from django.db import connections, transaction

    from audit.models import AuditEvent
    from audit.services import Actor, Target, record_event
    from config import context, redaction
    from orgs.services import org_create

    actor = Actor("user", "42", "bench-user")
    target = Target("credential", str(uuid.uuid4()), "billing-api")
    metadata = {"kind": "api_key", "key_id": "local:v1"}
    orgs = [org_create(slug=f"bench-{n}", name=f"Bench {n}") for n in range(writers + 2)]
    baseline_org, chained_org, per_writer_orgs = orgs[0], orgs[1], orgs[2:]
    # Far above the org's own chain (org_create records its first event): the baseline rows
    # only need numbers that are unique in their org.
    sequences = iter(range(10**9, 2 * 10**9))
    sequence_lock = threading.Lock()

    def plain_insert(org: Any) -> None:
        # The insert record_event made before the chain, into the same table and indexes.
        with sequence_lock:
            sequence = next(sequences)
        ctx = context.current()
        with transaction.atomic():
            AuditEvent.objects.create(
                org=org,
                sequence=sequence,
                actor_type=actor.type,
                actor_id=actor.id,
                actor_label=actor.label,
                action="credential.decrypt",
                target_type=target.type,
                target_id=target.id,
                target_label=target.label,
                request_id=ctx.request_id or "",
                job_id=ctx.job_id or "",
                ip=ctx.ip,
                user_agent=ctx.user_agent or "",
                metadata=redaction.redact(metadata),
                prev_hash=ZERO_HASH,
                hash=ZERO_HASH,
            )

    def chained(org: Any) -> None:
        with transaction.atomic():
            record_event(
                action="credential.decrypt", org=org, actor=actor, target=target, metadata=metadata
            )

    def timed(operation: Any, org: Any, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            with context.bound(
                request_id=uuid.uuid4().hex, ip="203.0.113.9", user_agent="bench/1.0 (audit)"
            ):
                operation(org)
            samples.append((time.perf_counter() - started) * 1e6)
        return samples

    for _ in range(50):  # warm-up: connections, caches, the chain head row
        plain_insert(baseline_org)
        chained(chained_org)
    per_round = writes // rounds
    baseline: list[float] = []
    chain: list[float] = []
    calibration_before = cpu_calibration_ms()
    for number in range(rounds):
        order = [(baseline, plain_insert, baseline_org), (chain, chained, chained_org)]
        for samples, operation, org in order if number % 2 == 0 else order[::-1]:
            samples.extend(timed(operation, org, per_round))

    def concurrently(operation: Any, org_for: Any) -> float:
        barrier = threading.Barrier(writers)
        each = writes // writers

        def run(index: int) -> None:
            try:
                barrier.wait()
                timed(operation, org_for(index), each)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return each * writers / (time.perf_counter() - started)

    parallel: dict[str, list[float]] = {"baseline": [], "one_chain": [], "own_chains": []}
    for _ in range(2):
        parallel["baseline"].append(concurrently(plain_insert, lambda n: baseline_org))
        parallel["one_chain"].append(concurrently(chained, lambda n: chained_org))
        parallel["own_chains"].append(concurrently(chained, lambda n: per_writer_orgs[n]))

    from audit.chain import chain_key
    from audit.verification import verify_chain

    checks = [verify_chain(chain_key(org.id)) for org in [chained_org, *per_writer_orgs]]
    if not all(report.ok for report in checks):
        raise BenchError(f"a chain written by the bench does not verify: {checks}")
    return {
        "writes": len(baseline),
        "baseline": _summary(baseline),
        "chain": _summary(chain),
        "writers": writers,
        "parallel_per_s": {name: statistics.fmean(v) for name, v in parallel.items()},
        "chained_events_verified": sum(report.events for report in checks),
        "cpu_calibration_ms": {"before": calibration_before, "after": cpu_calibration_ms()},
        "load": _load(),
    }


def format_writes(result: dict[str, Any]) -> str:
    base, chain = result["baseline"], result["chain"]
    par = result["parallel_per_s"]
    lines = [
        f"  one writer, {result['writes']} events each, one per transaction ({result['config']}):",
        f"    {'':28} {'p50 us':>9} {'p95 us':>9} {'mean us':>9} {'events/s':>9}",
    ]
    for name, figures in (("insert without chain", base), ("record_event (chain)", chain)):
        lines.append(
            f"    {name:28} {figures['p50_us']:9.0f} {figures['p95_us']:9.0f} "
            f"{figures['mean_us']:9.0f} {figures['per_s']:9.0f}"
        )
    lines.append(
        f"    chain / insert: {chain['p50_us'] / base['p50_us']:.2f}x at p50, "
        f"{chain['mean_us'] / base['mean_us']:.2f}x mean "
        f"(+{chain['p50_us'] - base['p50_us']:.0f} us per event at p50)"
    )
    lines.append(
        f"  {result['writers']} writer threads at once, events/s: insert without chain "
        f"{par['baseline']:.0f}; chain, all on one org {par['one_chain']:.0f} "
        f"({par['one_chain'] / par['baseline']:.2f}x); chain, each its own org "
        f"{par['own_chains']:.0f} ({par['own_chains'] / par['baseline']:.2f}x)"
    )
    lines.append(
        f"  every chain written verified ({result['chained_events_verified']} events); "
        "CPU calibration {before:.2f}/{after:.2f} ms, load {load}".format(
            **result["cpu_calibration_ms"], load=result["load"]
        )
    )
    return "\n".join(lines)


def _load_chain(org_id: uuid.UUID, count: int) -> int:
    """COPY `count` events onto the org's chain, hashed exactly as record_event would hash
    them, and move its head. Returns the chain's length."""
    from django.db import connection

    from audit.chain import chain_key, digest, format_time, metadata_encoding
    from audit.models import AuditChainHead

    chain = chain_key(org_id)
    actions = ("credential.decrypt", "agent_run.queue", "agent_run.finish", "credential.create")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    head = AuditChainHead.objects.filter(chain=chain).values_list("sequence", "hash").first()
    first, prev_hash = (head[0] + 1, head[1]) if head else (1, ZERO_HASH)
    columns = (
        "occurred_at, org_id, sequence, actor_type, actor_id, actor_label, action, "
        "target_type, target_id, target_label, outcome, request_id, job_id, ip, user_agent, "
        "metadata, hash_format, prev_hash, hash"
    )
    agent_id = str(uuid.uuid4())
    credentials = [str(uuid.uuid4()) for _ in range(500)]
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy,
    ):
        for sequence in range(first, first + count):
            worker = sequence % 2 == 0
            occurred_at = start + dt.timedelta(microseconds=sequence * 1237)
            text = (
                "agent" if worker else "user",
                agent_id if worker else str(sequence % 97),
                "invoice-fetcher" if worker else f"user-{sequence % 97}",
                actions[sequence % len(actions)],
                "credential",
                credentials[sequence % len(credentials)],
                "billing-api",
                "success",
                uuid.uuid4().hex,
                str(uuid.uuid4()) if worker else "",
            )
            ip = None if worker else f"198.51.100.{sequence % 250}"
            user_agent = "" if worker else "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
            metadata = {"key_id": "local:v1", "kind": "api_key", "n": sequence % 1000}
            digest_value = digest(
                prev_hash,
                chain,
                sequence,
                format_time(occurred_at),
                text,
                ip,
                user_agent,
                metadata_encoding(metadata),
            )
            copy.write_row(
                (
                    occurred_at,
                    org_id,
                    sequence,
                    *text,
                    ip,
                    user_agent,
                    json.dumps(metadata),
                    1,
                    prev_hash,
                    digest_value,
                )
            )
            prev_hash = digest_value
    last = first + count - 1
    AuditChainHead.objects.update_or_create(
        chain=chain, defaults={"sequence": last, "hash": prev_hash}
    )
    return last


def _verify_process(slug: str) -> dict[str, Any]:
    """`manage.py audit verify --org SLUG --json` as its own process: report and peak RSS."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "audit", "verify", "--org", slug, "--json"],
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        started = time.perf_counter()
        assert process.stdout is not None
        out = process.stdout.read()
        # wait4, not wait: it gives this child's own resource usage (peak RSS).
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            raise BenchError(f"audit verify --org {slug} failed: {errors.read().decode()[-2000:]}")
    report = json.loads(out)
    return {
        "events": report["events"],
        "seconds": report["seconds"],
        "per_s": report["events"] / report["seconds"] if report["seconds"] else 0.0,
        "wall_seconds": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "ok": report["ok"],
    }


def measure_verify(*, events: int, repeat: int) -> dict[str, Any]:
    from django.db import connection

    from audit.chain import chain_key
    from audit.verification import chain_rows
    from orgs.services import org_create

    if connection.vendor != "postgresql":
        raise BenchError("the verify part runs on PostgreSQL")
    big = org_create(slug="big", name="Big")
    small = org_create(slug="small", name="Small")
    org_create(slug="empty", name="Empty")
    small_events = max(events // 10, 1)
    started = time.perf_counter()
    big_chain = _load_chain(big.id, events)  # plus the org's own first event (org.create)
    _load_chain(small.id, small_events)
    load_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")
        cursor.execute("SELECT pg_total_relation_size('audit_auditevent')")
        (table_bytes,) = cursor.fetchone()

    def read_only() -> dict[str, float]:
        started = time.perf_counter()
        rows = sum(1 for _ in chain_rows(chain_key(big.id)))
        seconds = time.perf_counter() - started
        return {"rows": rows, "seconds": seconds, "per_s": rows / seconds}

    calibration_before = cpu_calibration_ms()
    reads, verifies = [], []
    for _ in range(repeat):
        reads.append(read_only())
        verifies.append(_verify_process("big"))
    smaller = _verify_process("small")
    empty = _verify_process("empty")
    if not all(v["ok"] and v["events"] == big_chain for v in verifies) or not smaller["ok"]:
        raise BenchError(f"verify did not pass over the loaded chain: {verifies}")
    return {
        "events": big_chain,
        "small_events": small_events,
        "load_seconds": load_seconds,
        "table_mb": table_bytes / 2**20,
        "read": reads,
        "verify": verifies,
        "verify_small": smaller,
        "verify_empty": empty,
        "cpu_calibration_ms": {"before": calibration_before, "after": cpu_calibration_ms()},
        "load": _load(),
    }


def format_verify(result: dict[str, Any]) -> str:
    lines = [
        f"  {result['events']:,} events loaded in {result['load_seconds']:.0f} s "
        f"(table with indexes: {result['table_mb']:.0f} MB)",
        f"    {'':38} {'events/s':>10} {'seconds':>8} {'peak RSS':>9}",
    ]
    for read, verify in zip(result["read"], result["verify"], strict=True):
        lines.append(
            f"    {'read only (same cursor, no checks)':38} {read['per_s']:10,.0f} "
            f"{read['seconds']:8.2f} {'':>9}"
        )
        lines.append(
            f"    {'audit verify':38} {verify['per_s']:10,.0f} {verify['seconds']:8.2f} "
            f"{verify['peak_rss_mb']:7.0f} MB   verify/read {verify['per_s'] / read['per_s']:.2f}x"
        )
    small, empty = result["verify_small"], result["verify_empty"]
    lines.append(
        f"    {'audit verify, ' + format(small['events'], ',') + ' events':38} "
        f"{small['per_s']:10,.0f} {small['seconds']:8.2f} {small['peak_rss_mb']:7.0f} MB"
    )
    lines.append(
        f"    {'audit verify, empty org (Django only)':38} {'':>10} {'':>8} "
        f"{empty['peak_rss_mb']:7.0f} MB"
    )
    best = max(v["per_s"] for v in result["verify"])
    lines.append(
        f"  target {VERIFY_TARGET:,} events/s: {'met' if best >= VERIFY_TARGET else 'NOT met'} "
        f"(best {best:,.0f}); CPU calibration "
        "{before:.2f}/{after:.2f} ms, load {load}".format(
            **result["cpu_calibration_ms"], load=result["load"]
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
