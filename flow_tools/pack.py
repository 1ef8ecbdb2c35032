"""Packed rawframes: a video's JPEGs in one file plus an offset index.

    python -m flow_tools.pack RAWFRAMES [--remove-jpegs] [--workers N]

`<video>/frames.pack` holds the JPEG files back to back; `<video>/frames.pack.json` maps each
kind (`img`, `flow_x`, `flow_y`) to [offset, length] per 1-based index in file order. A loader
then opens one file per sample instead of one per frame (30 per flow sample), which is what a
loaded sample costs beyond JPEG decoding, and a data set holds one file per video instead of
hundreds (shared file systems count inodes). Readers accept both layouts; a video counts as
packed once its index exists (written last, after the pack, both atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from .errors import EXIT_CODES_HELP, UserError, run_cli
from .rawframes import META_FILE, NAME_PATTERNS
from .rawframes import PACK_FILE as PACK
from .rawframes import PACK_INDEX_FILE as INDEX
from .tmpfiles import tmp_name

KINDS = NAME_PATTERNS  # kind -> the pattern of its loose JPEG names


def pack_video(folder: Path, remove_jpegs: bool = False) -> int:
    """Pack one rawframe folder; returns the number of JPEGs packed (0 if already packed)."""
    if (folder / INDEX).exists():
        return 0
    files: dict[str, list[tuple[int, Path]]] = {k: [] for k in KINDS}
    for entry in os.scandir(folder):
        for kind, pattern in KINDS.items():
            m = pattern.match(entry.name)
            if m:
                files[kind].append((int(m.group(1)), Path(entry.path)))
    index: dict[str, list[list[int]]] = {}
    tmp = tmp_name(folder / PACK)
    offset = 0
    with open(tmp, "wb") as out:
        for kind, items in files.items():
            items.sort()
            if [i for i, _ in items] != list(range(1, len(items) + 1)):
                raise UserError(f"{folder}: {kind} images are not numbered 1..{len(items)} "
                                "without gaps")
            index[kind] = []
            for _, path in items:
                data = path.read_bytes()
                out.write(data)
                index[kind].append([offset, len(data)])
                offset += len(data)
    os.replace(tmp, folder / PACK)
    tmp = tmp_name(folder / INDEX)
    tmp.write_text(json.dumps(index, separators=(",", ":")))
    os.replace(tmp, folder / INDEX)  # last: its presence means the pack is complete
    if remove_jpegs:
        for items in files.values():
            for _, path in items:
                path.unlink()
    return sum(len(v) for v in index.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flow_tools.pack",
                                description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP)
    p.add_argument("rawframes", help="a rawframe root (flow_tools.extract output)")
    p.add_argument("--remove-jpegs", action="store_true",
                   help="delete the loose JPEGs once a video is packed")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    def body() -> None:
        root = Path(args.rawframes)
        if not root.is_dir():
            raise UserError(f"{root}: rawframe folder not found")
        videos = sorted(m.parent for m in root.rglob(META_FILE))
        n = sum(pack_video(v, args.remove_jpegs)
                for v in tqdm(videos, desc="pack", unit="video",
                              disable=True if args.quiet else None))
        print(f"{len(videos)} videos, {n} JPEGs packed under {root}")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
