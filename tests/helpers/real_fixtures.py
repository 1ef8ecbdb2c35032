"""Where the real files of ../shared/fixtures are, and why a test cannot use them."""
import os
from pathlib import Path

import pytest

FIXTURES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures").resolve()


def fixtures_missing(path: Path = FIXTURES) -> str | None:
    """Why the real fixtures cannot be used, or None. Under CI (CI=true) their absence is a
    failure, not a skip: a suite that skipped every real-data test would pass hollow."""
    if path.is_dir():
        return None
    reason = f"real fixtures not found at {path} (../shared is not beside the repo)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    return reason
