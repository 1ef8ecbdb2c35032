"""The one exception type for user errors, and how a command line reports it.

A `UserError` is a problem the user can fix: a bad or missing file, a bad option, inputs that
do not fit together. Its message names the file (or option) and the problem. Command lines
print it as one line and exit 2; every other exception is a bug and keeps its traceback.
It lives in `flow_tools`, the lowest package, so that both packages raise the same type.
"""
from __future__ import annotations

import sys
from typing import Callable

EXIT_OK, EXIT_SOME_FAILED, EXIT_USER_ERROR = 0, 1, 2

EXIT_CODES_HELP = ("exit codes: 0 done; 1 done, but some items failed (listed, with reasons); "
                   "2 user error (bad file, bad option, mismatched inputs: one line on stderr "
                   "naming the file and the problem). Anything else is a bug and prints its "
                   "traceback.")


class UserError(Exception):
    """A bad input or option the user can fix; the message names the file and the problem."""


def one_line(e: BaseException) -> str:
    """The message on one line (errors re-raised from a DataLoader worker carry a traceback:
    its last line is the message)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def run_cli(fn: Callable[[], int | None]) -> int:
    """Run a command's body: a `UserError` becomes `error: <message>` on stderr and exit 2."""
    try:
        code = fn()
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return EXIT_OK if code is None else int(code)
