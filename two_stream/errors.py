"""User errors of the two_stream package: see `flow_tools.errors` (one type for both packages).

What this module adds: errors raised inside a DataLoader worker. torch re-raises them in the
trainer as the same type, with the message replaced by "Caught FrameReadError in DataLoader
worker process 0. Original Traceback ...", whose last line is the original message prefixed
by the class's full name (`two_stream.data.frames.FrameReadError: <file>: frame missing`).
`run_cli` prints the message as it is without workers.
"""
from __future__ import annotations

from typing import Callable

from flow_tools.errors import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USER_ERROR,
    UserError,
)
from flow_tools.errors import one_line as _last_line
from flow_tools.errors import run_cli as _run_cli

__all__ = ["EXIT_CODES_HELP", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USER_ERROR", "UserError",
           "one_line", "run_cli"]


def one_line(e: BaseException) -> str:
    """The message on one line: for an error re-raised from a loader worker, the original
    message without the traceback and without the class name the traceback puts before it."""
    line = _last_line(e)
    cls = type(e)
    for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def run_cli(fn: Callable[[], int | None]) -> int:
    """`flow_tools.errors.run_cli` (a `UserError` becomes `error: <message>` on stderr and
    exit 2), with the message of a worker's error unwrapped by `one_line`."""
    def body() -> int | None:
        try:
            return fn()
        except UserError as e:
            raise UserError(one_line(e)) from None
    return _run_cli(body)
