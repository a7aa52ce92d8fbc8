"""Rotation throughput: re-wrap N credentials with `credential_keys rotate`, against a naive loop
on the same rows in the same run, on SQLite and on PostgreSQL; peak memory of each.

    .venv/bin/python bench/rotation.py [--rows 10000,100000] [--configs sqlite,postgres]

For each configuration and row count the script (the orchestrator) makes a fresh database (a
temporary SQLite file, or a scratch PostgreSQL database created here and dropped afterwards)
and runs one child process per step, so each step's peak RSS (ru_maxrss) is its own:

1. setup: migrate, one organisation, N credentials sealed under local:v1 (bulk insert);
2. rotate: `manage.py credential_keys rotate --to local:v2` as an operator runs it (JSON
   progress lines, audit events), timed from the call to its return;
3. naive: the loop a first version would write, over the same rows (the first
   --naive-limit of them), back to local:v1: for each Credential model object: decrypt,
   encrypt under the target key, save();
4. verify: `credential_keys verify` (untimed): every row decrypts.

It prints rows/s of both, the ratio, the peak RSS of each step, and whether the targets are met
(rotate >= 10x the naive loop, >= 10,000 rows/s on PostgreSQL, flat memory). Timing belongs
here, never in tests. Results and method: docs/benchmarks.md.
"""

from __future__ import annotations

import sys

# `python bench/<script>.py` puts bench/ first on sys.path, where bench/logging.py would
# shadow the standard library's logging for every module imported after this line.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/bench")]

import argparse
import json
import os
import resource
import secrets
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.run_latency import BenchError, _create_database, _drop_database

CONFIGS = ("sqlite", "postgres")
TARGET_SPEEDUP = 10.0
TARGET_POSTGRES_ROWS_PER_SECOND = 10_000.0
STEPS = ("setup", "rotate", "naive", "verify")
_INHERITED_BUT_OURS = {
    "DATABASE_URL",
    "EVERESTHOOD_ENV_FILE",
    "EVERESTHOOD_VAR_DIR",
    "AGENT_CREDENTIAL_ACTIVE_KEY",
    "DJANGO_SETTINGS_MODULE",
    "LOG_LEVEL",
    "LOG_FILE",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="sqlite, postgres or both")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--naive-limit",
        type=int,
        default=20_000,
        help="rows the naive loop re-encrypts (the first of the same rows; its cost per row is "
        "constant, and at ~250-1,600 rows/s all of 100,000 would take minutes); 0: all",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(
            args.child, count=args.count, batch_size=args.batch_size, naive_limit=args.naive_limit
        )

    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")
    results = []
    for config in configs:
        for rows in (int(r) for r in args.rows.split(",") if r):
            print(f"-- {config}, {rows} rows", file=sys.stderr, flush=True)
            results.append(_measure(config, rows, args))
    load = os.getloadavg()
    print(
        f"rotation of N credentials (1 KiB-class secrets, batch {args.batch_size}); "
        f"{os.cpu_count()} CPUs; load average at the end {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}"
    )
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _measure(config: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    keys = {
        "AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32),
        "AGENT_CREDENTIAL_KEY_V2": secrets.token_hex(32),
    }
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_BUT_OURS}
    env = {k: v for k, v in env.items() if not k.startswith("AGENT_CREDENTIAL_")}
    env.update(keys)
    env.update({"EVERESTHOOD_ENV_FILE": "", "LOG_LEVEL": "WARNING"})
    scratch_db = None
    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as var_dir:
        env["EVERESTHOOD_VAR_DIR"] = var_dir
        if config == "postgres":
            scratch_db = f"everesthood_bench_{uuid.uuid4().hex[:10]}"
            _create_database(args.postgres, scratch_db)
            env["DATABASE_URL"] = f"{args.postgres.rstrip('/')}/{scratch_db}"
        try:
            figures: dict[str, Any] = {"config": config, "rows": rows}
            for step in STEPS:
                step_env = dict(env)
                # New writes and the rotation's target: v1 to set up, v2 to rotate onto; the
                # naive loop writes v1 again (it names its key itself).
                step_env["AGENT_CREDENTIAL_ACTIVE_KEY"] = "v1" if step == "setup" else "v2"
                completed = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        step,
                        "--count",
                        str(rows),
                        "--batch-size",
                        str(args.batch_size),
                        "--naive-limit",
                        str(args.naive_limit),
                    ],
                    cwd=BASE_DIR,
                    env=step_env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if completed.returncode != 0:
                    raise BenchError(f"{step} failed:\n{completed.stderr[-3000:]}")
                figures[step] = json.loads(completed.stdout.strip().splitlines()[-1])
            return figures
        finally:
            if scratch_db is not None:
                _drop_database(args.postgres, scratch_db)


def _child(step: str, *, count: int, batch_size: int, naive_limit: int) -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    if step == "setup":
        call_command("migrate", verbosity=0)
        _store(count)
        figure: dict[str, Any] = {}
    elif step == "rotate":
        sink = open(os.devnull, "w")  # noqa: SIM115 - the command's progress lines
        started = time.perf_counter()
        call_command(
            "credential_keys",
            "rotate",
            "--to",
            "local:v2",
            "--batch-size",
            str(batch_size),
            stdout=sink,
        )
        seconds = time.perf_counter() - started
        figure = {"seconds": seconds, "rows_per_second": count / seconds}
    elif step == "naive":
        limit = min(count, naive_limit) if naive_limit else count
        seconds = _naive_loop(target="local:v1", limit=limit)
        figure = {"seconds": seconds, "rows_per_second": limit / seconds, "rows": limit}
    else:
        sink = open(os.devnull, "w")  # noqa: SIM115
        call_command("credential_keys", "verify", stdout=sink)
        figure = {}
    figure["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figure))
    return 0


def _store(count: int) -> None:
    from django.utils import timezone

    from credentials import crypto
    from credentials.models import Credential, KeyUsage
    from credentials.services import encryption_context
    from orgs.models import Organization

    org = Organization.objects.create(slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench")
    now = timezone.now()
    chunk = 5000
    for start in range(0, count, chunk):
        rows = []
        for n in range(start, min(count, start + chunk)):
            credential_id = uuid.uuid4()
            sealed = crypto.seal(
                secrets.token_urlsafe(600).encode()[:800],
                context=encryption_context(org_id=org.id, credential_id=credential_id),
            )
            rows.append(
                Credential(
                    id=credential_id,
                    org=org,
                    name=f"credential-{n}",
                    key_id=sealed.key_id,
                    format_version=sealed.format_version,
                    wrapped_data_key=sealed.wrapped_data_key,
                    ciphertext=sealed.ciphertext,
                    secret_updated_at=now,
                )
            )
        Credential.objects.bulk_create(rows)
    KeyUsage.objects.add_wraps(key_id="local:v1", count=count)


def _naive_loop(*, target: str, limit: int) -> float:
    """What a first version does: a model object per row, decrypt, encrypt, save()."""
    from credentials import crypto
    from credentials.models import Credential
    from credentials.services import encryption_context

    started = time.perf_counter()
    with crypto.worker_role():
        for credential in Credential.objects.exclude(key_id=target).order_by("pk")[:limit]:
            context = encryption_context(
                org_id=credential.org_id,
                credential_id=credential.id,
                format_version=credential.format_version,
            )
            plaintext = crypto.open_sealed(
                crypto.SealedSecret(
                    credential.key_id,
                    bytes(credential.wrapped_data_key),
                    bytes(credential.ciphertext),
                    credential.format_version,
                ),
                context=context,
            )
            sealed = crypto.seal(plaintext, context=context, key_id=target)
            credential.key_id = sealed.key_id
            credential.wrapped_data_key = sealed.wrapped_data_key
            credential.ciphertext = sealed.ciphertext
            credential.save()
    return time.perf_counter() - started


def format_table(results: list[dict[str, Any]]) -> str:
    header = (
        "config",
        "rows",
        "rotate rows/s",
        "naive rows/s (rows)",
        "ratio",
        "rotate s",
        "naive s",
        "peak RSS rotate",
        "peak RSS naive",
        "targets",
    )
    lines = [header]
    for r in results:
        rotate, naive = r["rotate"], r["naive"]
        ratio = rotate["rows_per_second"] / naive["rows_per_second"]
        met = ratio >= TARGET_SPEEDUP and (
            r["config"] != "postgres"
            or rotate["rows_per_second"] >= TARGET_POSTGRES_ROWS_PER_SECOND
        )
        lines.append(
            (
                r["config"],
                f"{r['rows']:,}",
                f"{rotate['rows_per_second']:,.0f}",
                f"{naive['rows_per_second']:,.0f} ({naive['rows']:,})",
                f"{ratio:.1f}x",
                f"{rotate['seconds']:.2f}",
                f"{naive['seconds']:.2f}",
                f"{rotate['peak_rss_mb']:.0f} MB",
                f"{naive['peak_rss_mb']:.0f} MB",
                "met" if met else "NOT met",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    )


if __name__ == "__main__":
    sys.exit(main())
