import os
from pathlib import Path

import pytest

FIXTURES = (Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures").resolve()


def fixtures_missing(path: Path = FIXTURES) -> str | None:
    """Why the real fixtures cannot be used, or None. Under CI (CI=true) their absence is a
    failure, not a skip: a suite that skipped every real-data test would pass hollow."""
    if path.is_dir():
        return None
    reason = f"real fixtures not found at {path} (../shared is not beside the repo)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    return reason


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real files in ../shared/fixtures; tests that need them skip when it is absent,
    and fail under CI."""
    reason = fixtures_missing()
    if reason:
        pytest.skip(reason)
    return FIXTURES
