"""tqdm with the project's rule: shown on a terminal, silent in logs, CI and with --quiet."""
from __future__ import annotations

from tqdm import tqdm


def progress(iterable=None, *, quiet: bool = False, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)`, disabled when `quiet` or when stderr is not a TTY."""
    return tqdm(iterable, disable=True if quiet else None, dynamic_ncols=True, **kwargs)
