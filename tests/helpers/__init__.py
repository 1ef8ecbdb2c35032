"""Helpers the tests share (importable as `helpers.<module>`: pytest puts tests/ on sys.path
through tests/conftest.py). Data fixtures themselves live in tests/conftest.py."""
