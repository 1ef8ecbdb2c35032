"""Would decoding only the training crop make the flow loader faster than the decode bound?

    python benchmarks/speed/jpeg_tiles.py [--fixtures ../shared/fixtures] [--out results/loader]

A TSN training crop covers 44-100 % of a 340x256 frame, so a decoder that skips the rest could
beat whole-frame decoding. OpenCV cannot decode part of a JPEG; a pack format can, by storing
each grey flow image as column (or column x row) tiles on 8-pixel boundaries and decoding only
the tiles a crop touches. Grey JPEG blocks are coded independently, so the tiles decode to
exactly the whole image's pixels (checked here on every image). This script measures, on the
flow JPEGs `loader_speed.py` uses (re-encoded at the extractor's quality 95, whole and tiled),
one thread: bytes per image, decoding every tile, and decoding only the tiles that cover TSN
multi-scale training crops, against decoding the whole image. It writes `tiles.md|csv` and
`run_tiles.json` to `--out`.
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from benchmarks.speed.common import ucf_rawframes
from two_stream.data.transforms import multiscale_crop_box
from two_stream.report import note_start, write_run_json, write_table

QUALITY = 95  # flow_tools.extract's default


def edges(size: int, parts: int) -> list[int]:
    """Tile boundaries on 8-pixel block edges (the last tile takes the remainder)."""
    return [0] + [round(size * k / parts / 8) * 8 for k in range(1, parts)] + [size]


def encode(img: np.ndarray) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    assert ok
    return data


def tile(img: np.ndarray, cols: list[int], rows: list[int]) -> list[np.ndarray]:
    return [encode(np.ascontiguousarray(img[t:b, l:r]))
            for t, b in zip(rows, rows[1:]) for l, r in zip(cols, cols[1:])]


def covering(cols: list[int], rows: list[int], box: tuple[int, int, int, int]) -> list[int]:
    """Indices (row-major) of the tiles a crop box (top, left, h, w) touches."""
    top, left, h, w = box
    out = []
    for i, (t, b) in enumerate(zip(rows, rows[1:])):
        for j, (l, r) in enumerate(zip(cols, cols[1:])):
            if t < top + h and b > top and l < left + w and r > left:
                out.append(i * (len(cols) - 1) + j)
    return out


def assemble(tiles: list[np.ndarray], cols: list[int], rows: list[int]) -> np.ndarray:
    img = np.empty((rows[-1], cols[-1]), np.uint8)
    k = 0
    for t, b in zip(rows, rows[1:]):
        for l, r in zip(cols, cols[1:]):
            img[t:b, l:r] = cv2.imdecode(tiles[k], cv2.IMREAD_GRAYSCALE)
            k += 1
    return img


def best_us(fn, n: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 1e6 * best / n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", default="../shared/fixtures")
    p.add_argument("--work", default="data/speed_rawframes_tvl1",
                   help="rawframes made here once (shared with loader_speed.py)")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--out", default="results/loader")
    args = p.parse_args(argv)
    note_start()
    cv2.setNumThreads(1)
    ucf_rawframes(args.fixtures, args.work)
    files = sorted(Path(args.work).glob("*/*/flow_[xy]_*.jpg"))
    files = random.Random(0).sample(files, min(args.images, len(files)))
    planes = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    h, w = planes[0].shape
    rng = np.random.default_rng(0)
    boxes = [multiscale_crop_box(h, w, 224, rng) for _ in planes]
    whole = [encode(im) for im in planes]

    def decode_whole():
        for d in whole:
            cv2.imdecode(d, cv2.IMREAD_GRAYSCALE)

    t_whole = best_us(decode_whole, len(whole))
    rows = [{"layout": "whole image", "tiles": 1, "bytes_per_image": round(np.mean(
        [len(d) for d in whole])), "identical_pixels": True, "decode_all_us": round(t_whole, 1),
        "decode_crop_us": round(t_whole, 1), "crop_vs_whole": 1.0, "tiles_decoded": 1.0}]
    for ncols, nrows in ((2, 1), (4, 1), (3, 2), (4, 2)):
        cols, rws = edges(w, ncols), edges(h, nrows)
        tiled = [tile(im, cols, rws) for im in planes]
        identical = all(np.array_equal(assemble(t, cols, rws), cv2.imdecode(d, 0))
                        for t, d in zip(tiled, whole))
        needed = [covering(cols, rws, b) for b in boxes]

        def decode_all(tiled=tiled):
            for ts in tiled:
                for d in ts:
                    cv2.imdecode(d, cv2.IMREAD_GRAYSCALE)

        def decode_crop(tiled=tiled, needed=needed):
            for ts, ks in zip(tiled, needed):
                for k in ks:
                    cv2.imdecode(ts[k], cv2.IMREAD_GRAYSCALE)

        t_all, t_crop = best_us(decode_all, len(tiled)), best_us(decode_crop, len(tiled))
        rows.append({"layout": f"{ncols} x {nrows} tiles", "tiles": ncols * nrows,
                     "bytes_per_image": round(np.mean([sum(map(len, t)) for t in tiled])),
                     "identical_pixels": identical, "decode_all_us": round(t_all, 1),
                     "decode_crop_us": round(t_crop, 1),
                     "crop_vs_whole": round(t_crop / t_whole, 2),
                     "tiles_decoded": round(float(np.mean([len(k) for k in needed])), 2)})
        print(rows[-1])
    print(write_table(pd.DataFrame(rows), args.out, name="tiles",
                      title=f"Decoding only the crop: flow JPEGs as tiles ({w}x{h}, "
                      f"{len(planes)} images)",
                      note="One thread, cv2.imdecode, microseconds per image, best of 5 passes. "
                      "Flow images of loader_speed.py's rawframes re-encoded at quality 95 "
                      "whole and as tiles on 8-pixel boundaries (identical_pixels: the tiles "
                      "decode to the whole image's pixels). decode_crop: only the tiles that "
                      "one TSN multi-scale training crop per image touches (tiles_decoded on "
                      "average); crop_vs_whole = decode_crop / whole-image decoding. "
                      "Machine in run_tiles.json."))
    write_run_json(args.out, filename="run_tiles.json", options=vars(args))


if __name__ == "__main__":
    main()
