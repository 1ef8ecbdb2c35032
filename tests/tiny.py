"""Kept for the modules that still `from tiny import synthetic_rawframes`: use the `tiny_set` /
`rawframes_factory` fixtures of tests/conftest.py, or `helpers.data`, instead."""
from helpers.data import synthetic_rawframes

__all__ = ["synthetic_rawframes"]
