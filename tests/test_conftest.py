"""The fixture guard itself: a missing ../shared skips locally and fails under CI."""
import pytest
from conftest import fixtures_missing


def test_missing_fixtures_skip_locally_and_fail_under_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert "not found" in fixtures_missing(tmp_path / "nowhere")
    assert fixtures_missing(tmp_path) is None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but real fixtures not found"):
        fixtures_missing(tmp_path / "nowhere")
