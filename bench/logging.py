"""What observability costs: per log record, and per request.

    .venv/bin/python bench/logging.py [--records 2000] [--rounds 60] [--requests 50]

1. Log records. The same mix of records (plain messages, %-arguments, nested `extra` with
   credential-named keys, a URL with a query string, one traceback in twenty), inside a span
   and a job that registered three secrets (about twenty encoded forms to look for), as a
   worker logs; each record either through python-json-logger alone (a stock JsonFormatter
   with the project's options, no filters) or through the full chain (ContextFilter +
   RedactionFilter + JsonLineFormatter, which renders the same lines). Measured twice:
   through a handler that writes to /dev/null (`Handler.handle`, what a process pays per
   record: the project's JsonLineHandler against a StreamHandler with the stock formatter),
   and formatting only
   (`filter()` + `format()` against `format()`, the stricter figure). Fresh records for every
   pass (the filters rewrite records in place), frozen out of the garbage collector's sight;
   CPU time of each pass; the passes of a round run back to back (in rotating order), and each
   ratio is the median of the per-round ratios.

2. Requests. `GET /api/orgs/acme/credentials/` (session auth, ten credentials) through
   Django's test client, in separate processes: `off` (no request-context, user-context or
   Prometheus middleware, no tracing), `full` (the production stack: request context,
   OpenTelemetry's Django middleware with database spans, django-prometheus in multiprocess
   mode, user context; no exporter, the development default), and `full+export` (the same,
   plus a span exporter behind the redacting processor and a batch processor, so each span
   is copied and redacted; the exporter drops what it is given, so no network is timed).
   The three processes take turns round by round (CPU time of each child, its export thread
   included); the ratio is the median of the per-round ratios against `off`.

Targets (docs/benchmarks.md): the chain at most 1.5x plain formatting per record; the
observed stack at most 1.3x the bare one per request. Timing belongs here, never in tests.
"""

# This file is named logging.py, and `python bench/logging.py` puts bench/ first on sys.path,
# where it would shadow the standard library's logging: drop that entry before any import.
import sys

sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/bench")]

import argparse
import gc
import json
import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
RECORD_TARGET = 1.5
REQUEST_TARGET = 1.3
VARIANTS = ("off", "full", "full+export")
ENDPOINT = "/api/orgs/acme/credentials/"


# --- 1. log records -----------------------------------------------------------------------


def _make_records(count: int) -> list[Any]:
    import logging

    logger = logging.getLogger("agents.services")
    try:
        raise ValueError("upstream answered 502 for https://api.example.com/v1/charges")
    except ValueError:
        exc_info = sys.exc_info()
    run_id = "5b1c0f6e-0d5e-4a7e-9c3e-1f2a3b4c5d6e"
    audit = {"action": "credential.decrypt", "outcome": "success", "target_id": run_id}
    shapes: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("agent run started", (), {"agent_id": run_id, "tool": "http_request"}),
        (
            "agent run %s",
            ("succeeded",),
            {"status": "succeeded", "queue_to_finish_ms": 23.4, "error": ""},
        ),
        (
            "audit %s %s",
            ("credential.decrypt", "success"),
            {
                "audit": audit,
                "metadata": {"key_id": "local:v2", "headers": {"Authorization": "x"}},
            },
        ),
        (
            "http_request %s %s answered %s",
            ("GET", "https://api.example.com/v1/charges?limit=10&page=2", 200),
            {"elapsed_ms": 41.0},
        ),
        (
            "Task %s[%s] received",
            ("agents.run_agent", run_id),
            {"data": {"id": run_id, "name": "agents.run_agent", "args": f"['{run_id}']"}},
        ),
    ]
    records = []
    for i in range(count):
        exc: Any = None
        if i % 20 == 19:
            msg, args, extra, exc = "tool call failed", (), {"attempt": 2}, exc_info
        else:
            msg, args, extra = shapes[i % len(shapes)]
        records.append(
            logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, args, exc, extra=extra)
        )
    return records


def bench_records(count: int, rounds: int) -> dict[str, Any]:
    import logging

    from opentelemetry.sdk.trace import TracerProvider
    from pythonjsonlogger.json import JsonFormatter

    from config import context, redaction
    from config.logging import (
        JSON_FORMATTER_OPTIONS,
        ContextFilter,
        JsonLineFormatter,
        JsonLineHandler,
        RedactionFilter,
    )

    sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    plain_handler = logging.StreamHandler(sink)
    plain_handler.setFormatter(JsonFormatter(**JSON_FORMATTER_OPTIONS))
    chain_handler = JsonLineHandler(sink)  # what every process's handlers are
    plain = JsonFormatter(**JSON_FORMATTER_OPTIONS)
    chain_formatter = JsonLineFormatter()
    filters = [ContextFilter(), RedactionFilter()]
    tracer = TracerProvider().get_tracer("bench")

    def format_plain(records: list[Any]) -> None:
        for record in records:
            plain.format(record)

    def format_chain(records: list[Any]) -> None:
        for record in records:
            for f in filters:
                f.filter(record)
            chain_formatter.format(record)

    def handle_plain(records: list[Any]) -> None:
        for record in records:
            plain_handler.handle(record)

    def handle_chain(records: list[Any]) -> None:
        for record in records:
            chain_handler.handle(record)

    passes = {
        "handler_plain": handle_plain,
        "handler_chain": handle_chain,
        "format_plain": format_plain,
        "format_chain": format_chain,
    }
    per_record: dict[str, list[float]] = {name: [] for name in passes}
    with (
        context.bound(request_id="req-bench-000001", job_id="job-bench", org="acme"),
        redaction.secret_scope(),
        tracer.start_as_current_span("bench"),
    ):
        for secret in (secrets.token_urlsafe(24), secrets.token_hex(20), "hunter2-" * 4):
            redaction.register_secret(secret)
        for runner in passes.values():
            runner(_make_records(500))  # warm up
        names = list(passes)
        for round_number in range(rounds):
            # Rotate the order, so no pass always runs first (on a cooler CPU, say).
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                records = _make_records(count)
                # The pre-built records would otherwise be scanned by every cyclic collection
                # the timed pass triggers, a cost a process that logs (and frees) one record
                # at a time never pays.
                gc.collect()
                gc.freeze()
                started = time.process_time()
                passes[name](records)
                per_record[name].append((time.process_time() - started) / count * 1e6)
                del records
                gc.unfreeze()
    sink.close()

    def paired(chain: str, plain: str) -> float:
        # Passes of one round ran back to back: their ratio cancels out how busy the host was
        # at that moment (this one is shared), which the medians of each series alone do not.
        return statistics.median(
            c / p for p, c in zip(per_record[plain], per_record[chain], strict=True)
        )

    return {
        "records": count,
        "rounds": rounds,
        "us_per_record": {name: statistics.median(v) for name, v in per_record.items()},
        "us_per_record_all": per_record,
        "ratio_handler": paired("handler_chain", "handler_plain"),
        "ratio_format": paired("format_chain", "format_plain"),
    }


# --- 2. requests ---------------------------------------------------------------------------

_BARE_MIDDLEWARE_REMOVED = (
    "config.middleware.RequestContextMiddleware",
    "config.middleware.RequestUserContextMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
)


def _child_env(var_dir: Path, metrics_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_CREDENTIAL_", "OTEL_", "DATABASE_", "LOG_", "CELERY_"))
    }
    env.update(
        {
            "EVERESTHOOD_ENV_FILE": "",
            "EVERESTHOOD_VAR_DIR": str(var_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32),
            "LOG_LEVEL": "INFO",
            "ALLOWED_HOSTS": "testserver",  # Django's test client
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    return env


def _setup_django() -> None:
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()


def child_prepare() -> int:
    _setup_django()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from credentials.services import credential_create
    from orgs.models import Role
    from orgs.services import membership_set, org_create

    call_command("migrate", verbosity=0, interactive=False)
    # Through the services, so the member is in the org's role group (django-guardian) as
    # every member is: a bare Membership row reads nothing (403).
    org = org_create(slug="acme", name="Acme")
    user = User.objects.create_user(username="bench", password="bench-password-1")  # noqa: S106
    membership_set(org=org, user=user, role=Role.MEMBER, acting_user=None)
    for i in range(10):
        credential_create(org=org, acting_user=user, name=f"key-{i}", secret=secrets.token_hex(16))
    return 0


class _DroppingExporter:
    """Receives spans (already copied and redacted) and drops them."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def child_requests(variant: str) -> int:
    _setup_django()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    from config import telemetry

    if variant == "off":
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m not in _BARE_MIDDLEWARE_REMOVED]
    else:
        exporters: list[Any] = [_DroppingExporter()] if variant == "full+export" else []
        telemetry.configure(role="web", exporters=exporters)
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    for _ in range(200):  # warm up: caches, connection, middleware chain
        assert client.get(ENDPOINT).status_code == 200
    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line)
        started = time.process_time()
        for _ in range(count):
            client.get(ENDPOINT)
        elapsed = time.process_time() - started
        print(json.dumps({"us_per_request": elapsed / count * 1e6}), flush=True)
    return 0


def bench_requests(requests: int, rounds: int) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="everesthood-bench-") as tmp:
        var_dir, metrics_dir = Path(tmp) / "var", Path(tmp) / "metrics"
        var_dir.mkdir()
        metrics_dir.mkdir()
        env = _child_env(var_dir, metrics_dir)
        subprocess.run(
            [sys.executable, script, "--child", "prepare"],
            cwd=BASE_DIR,
            env=env,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        children = {}
        for variant in VARIANTS:
            child = subprocess.Popen(
                [sys.executable, script, "--child", "requests", "--variant", variant],
                cwd=BASE_DIR,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"request child {variant} did not start")
            children[variant] = child
        results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        try:
            for round_number in range(rounds):
                # Rotate who goes first, so no variant always runs on a cooler CPU.
                order = VARIANTS[round_number % 3 :] + VARIANTS[: round_number % 3]
                for variant in order:
                    child = children[variant]
                    assert child.stdin is not None
                    assert child.stdout is not None
                    child.stdin.write(f"{requests}\n")
                    child.stdin.flush()
                    results[variant].append(json.loads(child.stdout.readline())["us_per_request"])
        finally:
            for child in children.values():
                if child.stdin is not None:
                    child.stdin.close()
                child.wait(timeout=30)
    medians = {variant: statistics.median(values) for variant, values in results.items()}

    def paired(variant: str) -> float:
        # Per round, against the bare stack's time in the same round (see bench_records).
        return statistics.median(
            v / off for v, off in zip(results[variant], results["off"], strict=True)
        )

    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "us_per_request": medians,
        "us_per_request_all": results,
        "ratio_full": paired("full"),
        "ratio_full_export": paired("full+export"),
    }


# --- report --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    # Many short rounds: on a shared host the load changes within seconds, and only passes
    # that run close together see the same conditions.
    parser.add_argument("--records", type=int, default=2000, help="records per pass")
    parser.add_argument("--rounds", type=int, default=60, help="alternating rounds")
    parser.add_argument("--requests", type=int, default=50, help="requests per round")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--child", choices=["prepare", "requests"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "prepare":
        return child_prepare()
    if args.child == "requests":
        return child_requests(args.variant)

    sys.path.insert(0, str(BASE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    records = bench_records(args.records, args.rounds)
    us = records["us_per_record"]
    print(
        f"\nLog records ({records['records']} per pass, medians of {records['rounds']} rounds, "
        f"CPU time)\n"
        f"  through a handler to /dev/null:  python-json-logger alone {us['handler_plain']:.2f} "
        f"us/record, the project's handler (filters + formatter) {us['handler_chain']:.2f}\n"
        f"  formatting only:                 python-json-logger alone {us['format_plain']:.2f} "
        f"us/record, filters + formatter {us['format_chain']:.2f}"
    )
    for label, key in (("through a handler", "ratio_handler"), ("formatting only", "ratio_format")):
        met = "yes" if records[key] <= RECORD_TARGET else "NO"
        print(
            f"  ratio, {label} (median of per-round ratios): {records[key]:.2f}x "
            f"(target <= {RECORD_TARGET}x: {met})"
        )
    requests = bench_requests(args.requests, args.rounds)
    medians = requests["us_per_request"]
    print(
        f"\nRequests: GET {ENDPOINT} ({requests['requests_per_round']} per round, median of "
        f"{requests['rounds']} rounds)"
    )
    for variant in VARIANTS:
        print(f"  {variant:<12} {medians[variant]:8.1f} us/request (CPU)")
    for label, key in (("full", "ratio_full"), ("full+export", "ratio_full_export")):
        met = "yes" if requests[key] <= REQUEST_TARGET else "NO"
        print(
            f"  ratio {label}/off (median of per-round ratios): {requests[key]:.2f}x "
            f"(target <= {REQUEST_TARGET}x: {met})"
        )
    if args.json:
        args.json.write_text(json.dumps({"records": records, "requests": requests}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
