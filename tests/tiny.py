"""Small data the tests build for themselves."""
from __future__ import annotations

from pathlib import Path

from flow_tools.extract import ExtractConfig, extract_all
from flow_tools.flow import FlowParams
from two_stream.data.synthetic import SyntheticConfig, generate


def synthetic_rawframes(syn_root: Path, frames_root: Path, cfg: SyntheticConfig,
                        **extract) -> Path:
    """A synthetic set in `syn_root` (videos/, splits/) and its rawframes with DIS flow (fast)
    in `frames_root`; `extract`: further ExtractConfig fields. Returns `frames_root`."""
    generate(syn_root, cfg, quiet=True)
    extract_all(syn_root / "videos", frames_root,
                ExtractConfig(flow=FlowParams("dis"), **extract), quiet=True)
    return frames_root
