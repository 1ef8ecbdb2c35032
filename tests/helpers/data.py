"""Small data the tests build for themselves."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flow_tools.extraction import extract_all
from flow_tools.params import ExtractConfig, FlowParams
from two_stream.data.synthetic import SyntheticConfig, generate


@dataclass(frozen=True)
class TinySet:
    """A generated synthetic set and its rawframes: `root` holds videos/, splits/ and
    synthetic.json (generate's layout), `frames` the extracted rawframes (DIS flow)."""
    root: Path
    frames: Path
    config: SyntheticConfig

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def splits(self) -> Path:
        return self.root / "splits"


def synthetic_rawframes(syn_root: Path, frames_root: Path, cfg: SyntheticConfig,
                        **extract) -> Path:
    """A synthetic set in `syn_root` (videos/, splits/) and its rawframes with DIS flow (fast)
    in `frames_root`; `extract`: further ExtractConfig fields. Returns `frames_root`."""
    generate(syn_root, cfg, quiet=True)
    extract_all(syn_root / "videos", frames_root,
                ExtractConfig(flow=FlowParams("dis"), **extract), quiet=True)
    return frames_root


def tiny_set(root: Path, cfg: SyntheticConfig, **extract) -> TinySet:
    """`synthetic_rawframes` with the frames inside the set's folder (`root/frames`)."""
    synthetic_rawframes(root, root / "frames", cfg, **extract)
    return TinySet(root, root / "frames", cfg)
