"""Queue-to-finish latency of an agent run, against a bare Celery round trip on the same broker.

    .venv/bin/python bench/run_latency.py [--runs 200] [--configs embedded,redis-postgres]

For each configuration this script (the orchestrator) starts one child process, because Django
settings are per process. The child gets a fresh database (a temporary SQLite file, or a scratch
PostgreSQL database created here and dropped afterwards), migrates it, starts a real worker
(agents.worker_process.WorkerProcess), points an agent's http_request tool at a local
CredentialCheckingEndpoint, warms up, then measures, interleaving the two:

- no-op: wall time of ``ping.apply_async().get(interval=0.002)``;
- run: wall time from just before ``agent_run_create`` (called as the API calls it: its own
  transaction, and on_commit publishes the task) to ``AsyncResult(run_id).get(interval=0.002)``
  returning (the run_agent task id is the run id; the task returns the final status);
- run (db): the run row's own ``finished_at - queued_at``, a second opinion from the database.

It prints p50/p95 per configuration, the ratio run/no-op and whether the targets are met.
See docs/benchmarks.md. Timing belongs here, never in tests.
"""

from __future__ import annotations

import sys

# `python bench/<script>.py` puts bench/ first on sys.path, where bench/logging.py would
# shadow the standard library's logging for every module imported after this line.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/bench")]

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

CONFIGS = ("embedded", "redis-postgres")
# p50 of the run's queue-to-finish wall time, in milliseconds.
TARGET_P50_MS = {"embedded": 150.0, "redis-postgres": 25.0}
RESULT_INTERVAL = 0.002  # seconds between result polls (database result backends poll)
RESULT_TIMEOUT = 30.0

# Variables of the calling shell that would point a child at another database, broker, queue,
# log, key or settings file: each configuration sets its own.
_INHERITED_BUT_OURS = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CELERY_TASK_DEFAULT_QUEUE",
    "CELERY_BROKER_POLLING_INTERVAL",
    "LOG_FILE",
    "LOG_LEVEL",
    "SQLITE_TEST_PATH",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "DEBUG",
    "EVERESTHOOD_ENV_FILE",
    "EVERESTHOOD_VAR_DIR",
    "DJANGO_SETTINGS_MODULE",
}


# --- orchestrator --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="measured runs per config")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured runs first")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated, from: {', '.join(CONFIGS)} (default: all)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes (prefork)")
    parser.add_argument(
        "--pool", default="prefork", choices=["prefork", "solo", "threads"], help="worker pool"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (a scratch database is created there and dropped)",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis broker and result backend (a queue of the run's own is used)",
    )
    parser.add_argument(
        "--settings",
        default="config.settings",
        help="Django settings module for the child and its worker: measure a proposed "
        "settings change without editing config/settings.py",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return child_main(args)

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown or args.runs < 2:
        parser.error(f"unknown config(s): {', '.join(unknown)}" if unknown else "--runs >= 2")

    print(
        f"Agent run latency: {args.runs} runs after {args.warmup} warm-up, worker pool "
        f"{args.pool} x{args.concurrency}, settings {args.settings}; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    failed = False
    for config in configs:
        print(f"\n[{config}] preparing ...", flush=True)
        try:
            results.append(run_config(config, args))
        except BenchError as exc:
            failed = True
            print(f"[{config}] FAILED: {exc}", flush=True)
    if results:
        print()
        print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


class BenchError(RuntimeError):
    pass


def run_config(config: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"everesthood-bench-{config}-") as tmp:
        tmp_dir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in _INHERITED_BUT_OURS}
        env = {k: v for k, v in env.items() if not k.startswith("AGENT_CREDENTIAL_")}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": args.settings,
                "EVERESTHOOD_ENV_FILE": "",
                "EVERESTHOOD_VAR_DIR": str(tmp_dir / "var"),
                # DEBUG off as in production: Django then keeps no per-query log in memory.
                "DEBUG": "false",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32),
                # A queue nobody else consumes, even on a shared Redis.
                "CELERY_TASK_DEFAULT_QUEUE": f"bench-{uuid.uuid4().hex[:12]}",
                "BENCH_WORKER_LOG": str(tmp_dir / "worker.log"),
                # The caller's INFO lines would bury the table; the worker, whose lines are
                # part of what a run costs, logs at INFO to a file (below).
                "LOG_LEVEL": "WARNING",
            }
        )
        scratch_db = None
        if config == "redis-postgres":
            scratch_db = f"everesthood_bench_{uuid.uuid4().hex[:8]}"
            _create_database(args.postgres, scratch_db)
            env["DATABASE_URL"] = f"{args.postgres.rstrip('/')}/{scratch_db}"
            env["CELERY_BROKER_URL"] = args.redis
        result_file = tmp_dir / "result.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            config,
            "--result-file",
            str(result_file),
            "--runs",
            str(args.runs),
            "--warmup",
            str(args.warmup),
            "--concurrency",
            str(args.concurrency),
            "--pool",
            args.pool,
        ]
        try:
            completed = subprocess.run(command, cwd=BASE_DIR, env=env, check=False)
            if completed.returncode != 0 or not result_file.exists():
                worker_log = tmp_dir / "worker.log"
                tail = worker_log.read_text(errors="replace")[-3000:] if worker_log.exists() else ""
                raise BenchError(
                    f"child exited with status {completed.returncode}"
                    + (f"; worker output tail:\n{tail}" if tail else "")
                )
            return json.loads(result_file.read_text(encoding="utf-8"))
        finally:
            if scratch_db is not None:
                _drop_database(args.postgres, scratch_db)


def _admin_connection(server_url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(f"{server_url.rstrip('/')}/postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        raise BenchError(f"cannot connect to PostgreSQL at {server_url}: {exc}") from None


def _create_database(server_url: str, name: str) -> None:
    from psycopg import sql

    with _admin_connection(server_url) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(server_url: str, name: str) -> None:
    from psycopg import sql

    with _admin_connection(server_url) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def format_table(results: list[dict[str, Any]]) -> str:
    header = (
        "config",
        "n",
        "noop p50",
        "noop p95",
        "run p50",
        "run p95",
        "run(db) p50",
        "run(db) p95",
        "ratio p50",
        "target p50",
        "met",
        "cpu calib",
        "steal",
    )
    rows = [header]
    for r in results:
        target = TARGET_P50_MS[r["config"]]
        rows.append(
            (
                r["config"],
                str(r["n"]),
                f"{r['noop_ms']['p50']:.1f}",
                f"{r['noop_ms']['p95']:.1f}",
                f"{r['run_ms']['p50']:.1f}",
                f"{r['run_ms']['p95']:.1f}",
                f"{r['run_db_ms']['p50']:.1f}",
                f"{r['run_db_ms']['p95']:.1f}",
                f"{r['run_ms']['p50'] / r['noop_ms']['p50']:.2f}x",
                f"<= {target:.0f}",
                "yes" if r["run_ms"]["p50"] <= target else "NO",
                "{before:.2f}/{after:.2f}".format(**r["cpu_calibration_ms"]),
                "-" if r.get("steal_percent") is None else f"{r['steal_percent']:.1f}%",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + (
        "\n(milliseconds. run: queue to finish as the caller sees it; run(db): the row's "
        "finished_at - queued_at;\n cpu calib: ms for a fixed Python loop before/after, "
        "lower is a faster host at that moment;\n steal: CPU time the hypervisor gave to "
        "other guests while measuring, of all CPU time)"
    )


# --- child: one configuration, one process -----------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()

    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    result = measure(
        config=args.child,
        runs=args.runs,
        warmup=args.warmup,
        concurrency=args.concurrency,
        pool=args.pool,
    )
    args.result_file.write_text(json.dumps(result), encoding="utf-8")
    return 0


def measure(*, config: str, runs: int, warmup: int, concurrency: int, pool: str) -> dict[str, Any]:
    from celery.result import AsyncResult
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection

    from agents.demo_endpoint import CredentialCheckingEndpoint
    from agents.models import AgentRun
    from agents.services import BindingSpec, agent_create, agent_run_create
    from agents.tasks import ping
    from agents.worker_process import WorkerProcess
    from credentials.services import credential_create
    from orgs.services import org_create

    secret = f"bench-{secrets.token_urlsafe(24)}"
    user = User.objects.create_user(username="bench")
    org = org_create(slug="bench", name="Bench", owner=user)
    credential = credential_create(org=org, acting_user=user, name="bench-key", secret=secret)

    task_ids: list[str] = []  # every result this run leaves in the backend, to forget after

    def one_noop() -> float:
        started = time.perf_counter()
        result = ping.apply_async()
        answer = result.get(interval=RESULT_INTERVAL, timeout=RESULT_TIMEOUT)
        elapsed = time.perf_counter() - started
        task_ids.append(result.id)
        if answer != "pong":
            raise BenchError(f"ping answered {answer!r}")
        return elapsed * 1000

    def one_run(agent: Any) -> tuple[float, str]:
        started = time.perf_counter()
        # As the API and the UI call it: its own transaction, published once that commits.
        run = agent_run_create(agent=agent, acting_user=user)
        status = AsyncResult(str(run.id)).get(interval=RESULT_INTERVAL, timeout=RESULT_TIMEOUT)
        elapsed = time.perf_counter() - started
        task_ids.append(str(run.id))
        if status != "succeeded":
            error = AgentRun.objects.filter(pk=run.id).values_list("error", flat=True).first()
            raise BenchError(f"run {run.id} ended {status!r}: {error}")
        return elapsed * 1000, str(run.id)

    worker_log = Path(os.environ["BENCH_WORKER_LOG"])
    with CredentialCheckingEndpoint(secret) as endpoint:
        agent = agent_create(
            org=org,
            acting_user=user,
            name="bench-agent",
            config={"method": "GET", "url": endpoint.url},
            bindings=[
                BindingSpec(
                    slot="auth",
                    credential_id=credential.id,
                    placement="header",
                    target="Authorization",
                    template="Bearer {secret}",
                )
            ],
        )
        worker = WorkerProcess(
            # The worker logs at INFO as in production; its output goes to a file.
            env={"LOG_LEVEL": "INFO"},
            log_path=worker_log,
            concurrency=concurrency,
            pool=pool,
        )
        print(
            f"[{config}] database {connection.vendor}, broker "
            f"{settings.CELERY_BROKER_URL.split('://')[0]}, result backend "
            f"{settings.CELERY_RESULT_BACKEND.split('://')[0]}; starting worker ...",
            flush=True,
        )
        with worker:
            calibration_before = cpu_calibration_ms()
            cpu_before = cpu_times()
            for _ in range(warmup):
                one_noop()
                one_run(agent)
            print(f"[{config}] warmed up; measuring {runs} runs ...", flush=True)
            noop_ms: list[float] = []
            run_ms: list[float] = []
            run_ids: list[str] = []
            # Interleaved, so drift (a noisy neighbour, a checkpoint) hits both series alike.
            for _ in range(runs):
                noop_ms.append(one_noop())
                elapsed, run_id = one_run(agent)
                run_ms.append(elapsed)
                run_ids.append(run_id)
            cpu_after = cpu_times()
        expected = f"Bearer {secret}"
        accepted = sum(r.headers.get("Authorization") == expected for r in endpoint.received)
        if accepted != warmup + runs:
            raise BenchError(f"endpoint accepted {accepted} of {warmup + runs} calls")

    _clean_broker_and_results(task_ids)
    db_ms = [
        (run.finished_at - run.queued_at).total_seconds() * 1000
        for run in AgentRun.objects.filter(pk__in=run_ids).only("queued_at", "finished_at")
        if run.finished_at is not None
    ]
    return {
        "config": config,
        "n": runs,
        "database": connection.vendor,
        "broker": settings.CELERY_BROKER_URL.split("://")[0],
        "result_backend": settings.CELERY_RESULT_BACKEND.split("://")[0],
        "broker_polling_interval": settings.CELERY_BROKER_POLLING_INTERVAL
        if settings.EMBEDDED_BROKER
        else None,
        "settings": os.environ["DJANGO_SETTINGS_MODULE"],
        "worker": {"pool": pool, "concurrency": concurrency},
        "cpu_calibration_ms": {"before": calibration_before, "after": cpu_calibration_ms()},
        "steal_percent": steal_percent(cpu_before, cpu_after),
        "noop_ms": summarize(noop_ms),
        "run_ms": summarize(run_ms),
        "run_db_ms": summarize(db_ms),
    }


def _clean_broker_and_results(task_ids: list[str]) -> None:
    """Leave nothing on a shared broker: forget every result and delete our queue."""
    from celery.result import AsyncResult
    from django.conf import settings

    from config.celery import app

    for task_id in task_ids:
        AsyncResult(task_id).forget()
    with app.connection_for_write() as connection:
        # kombu deletes only bindings this channel knows of: declare, then delete.
        queue = app.amqp.queues[settings.CELERY_TASK_DEFAULT_QUEUE].bind(connection.default_channel)
        queue.declare()
        queue.delete()


def cpu_times() -> list[int] | None:
    """The host's CPU time counters (Linux /proc/stat, all CPUs), or None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    return [int(v) for v in fields[1:]] if fields and fields[0] == "cpu" else None


def steal_percent(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of CPU time stolen by the hypervisor between two cpu_times() (the 8th counter):
    on a shared virtual machine, the other guests' load that no calibration loop shows."""
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return None
    deltas = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(deltas[:8])  # user nice system idle iowait irq softirq steal
    return 100.0 * deltas[7] / total if total > 0 else None


def cpu_calibration_ms() -> float:
    """Best of 5 timings of a fixed pure-Python loop: how fast this host is right now.

    Shared and virtual machines vary (here by up to ~1.7x within minutes); every figure above
    moves with this one, so it is printed next to them."""
    timings = timeit.repeat("sum(range(100_000))", number=20, repeat=5)
    return min(timings) * 1000 / 20


def summarize(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50": statistics.median(samples),
        "p95": cuts[94],
        "mean": statistics.fmean(samples),
        "min": min(samples),
        "max": max(samples),
    }


if __name__ == "__main__":
    sys.exit(main())
