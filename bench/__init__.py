"""Benchmark scripts, run as files (`.venv/bin/python bench/<name>.py`)."""
