"""Kept for the modules that still `from kill import ...`: use `helpers.kill` instead."""
from helpers.kill import run_and_kill, run_killed_at, timed

__all__ = ["run_and_kill", "run_killed_at", "timed"]
