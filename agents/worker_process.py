"""Start and stop a real Celery worker process (demo, benchmarks, integration tests).

The worker is a separate OS process running `celery -A config worker`: it has the worker role
(the only role that may decrypt), its own logging, and reaches the database and broker through
the same settings as production, taken from the environment it is given.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from django.conf import settings

from config.celery import app


class WorkerStartError(RuntimeError):
    pass


class WorkerProcess:
    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        queue: str | None = None,
        log_path: Path | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        inherit_environment: bool = True,
        include: Sequence[str] = (),
    ) -> None:
        self.queue = queue or settings.CELERY_TASK_DEFAULT_QUEUE
        self.log_path = log_path
        self.name = f"worker-{uuid.uuid4().hex[:8]}@%h"
        base = dict(os.environ) if inherit_environment else {}
        self._env = {**base, **(env or {})}
        self._args = [
            sys.executable,
            "-m",
            "celery",
            "--quiet",  # no banner: every line the worker writes is a JSON log record
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--queues",
            self.queue,
            "--hostname",
            self.name,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if include:
            # Extra task modules to import (celery's --include), e.g. test probes.
            self._args += ["--include", ",".join(include)]
        self._process: subprocess.Popen[bytes] | None = None
        self._output: object = None

    def start(self, *, timeout: float = 60.0) -> WorkerProcess:
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._output = output
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self._args,
            env=self._env,
            cwd=settings.BASE_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float) -> None:
        """A ping task round trip through the broker proves the worker consumes our queue."""
        from agents.tasks import ping

        deadline = time.monotonic() + timeout
        result = ping.apply_async(queue=self.queue)
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise WorkerStartError(
                    f"worker exited with status {self._process.returncode} before it was ready"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if result.ready():
                result.get(timeout=1)
                return
            time.sleep(0.02)
        self.stop()
        raise WorkerStartError(f"worker not ready after {timeout:.0f} s")

    def stop(self, *, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # warm shutdown: finish the current task
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        output = self._output
        if output is not None and hasattr(output, "close"):
            output.close()
        self._output = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def database_url(settings_dict: Mapping[str, object]) -> str:
    """A DATABASE_URL for the connection described by Django's settings dict."""
    engine = str(settings_dict["ENGINE"])
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        return f"sqlite:///{Path(name).resolve()}"
    if engine.endswith("postgresql"):
        user = settings_dict.get("USER") or ""
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{name}"
    raise ValueError(f"no DATABASE_URL form for {engine}")


__all__ = ["WorkerProcess", "WorkerStartError", "app", "database_url"]
