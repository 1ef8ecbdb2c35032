"""Transitional: the old name and positional signature of `two_stream.score_checkpoint`.
Removed once the suite and the sweep call `score_checkpoint.write_scores` with a Config."""
from __future__ import annotations

from .score_checkpoint import write_scores as _write_scores


def write_scores(cfgs, ck_path, ck, data, records, split, stream, device, amp_dtype=None):
    """`score_checkpoint.write_scores` called positionally with the {concern: dataclass}
    dict."""
    return _write_scores(cfgs, ck_path=ck_path, ck=ck, data=data, records=records,
                         split=split, stream=stream, device=device, amp_dtype=amp_dtype)
