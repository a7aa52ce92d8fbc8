"""The project's settings plus the change docs/benchmarks.md proposes, for measuring it:

    .venv/bin/python bench/run_latency.py --settings bench.settings_db_reuse

Celery's Django fixup closes every database connection before and after each task unless
CELERY_DB_REUSE_MAX is set, so each run on PostgreSQL opens a new connection.
"""

from config.settings import *  # noqa: F403

CELERY_DB_REUSE_MAX = 100
