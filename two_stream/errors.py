"""User errors of the two_stream package: see `flow_tools.errors` (one type for both packages)."""
from flow_tools.errors import (
                               EXIT_CODES_HELP,
                               EXIT_OK,
                               EXIT_SOME_FAILED,
                               EXIT_USER_ERROR,
                               UserError,
                               one_line,
                               run_cli,
)

__all__ = ["EXIT_CODES_HELP", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USER_ERROR", "UserError",
           "one_line", "run_cli"]
