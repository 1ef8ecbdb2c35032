from pathlib import Path

import pytest

FIXTURES = (Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures").resolve()


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real files in ../shared/fixtures; tests that need them skip when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is not beside the repo)")
    return FIXTURES
