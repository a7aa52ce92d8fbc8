"""What a PostgreSQL connection really sent: libpq's protocol trace, read back.

Django's query log records what Django asked for (it logs BEGIN when a transaction is wanted,
not when one is sent); the trace records the messages on the wire. Each round trip ends with
the server's ReadyForQuery, so counting those counts round trips: a count, never a timing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import pq


@dataclass
class Trace:
    lines: list[str] = field(default_factory=list)

    @property
    def queries(self) -> list[str]:
        """The text of each query string sent (simple protocol), in order."""
        sent = []
        for line in self.lines:
            parts = line.split("\t", 3)
            if len(parts) == 4 and parts[0] == "F" and parts[2] == "Query":
                sent.append(parts[3].strip().removeprefix('"').removesuffix('"'))
        return sent

    @property
    def round_trips(self) -> int:
        return sum(1 for line in self.lines if line.split("\t")[2:3] == ["ReadyForQuery"])


@contextmanager
def protocol_trace(wrapper: Any) -> Iterator[Trace]:
    """Trace what `wrapper` (a Django connection) sends and receives inside the block."""
    wrapper.ensure_connection()
    pgconn = wrapper.connection.pgconn
    trace = Trace()
    with tempfile.TemporaryFile() as file:
        pgconn.trace(file.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield trace
        finally:
            pgconn.untrace()  # flushes
            file.seek(0)
            trace.lines = file.read().decode(errors="replace").splitlines()
