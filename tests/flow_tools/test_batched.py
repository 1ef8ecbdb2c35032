"""The device backend's batch sizing: out of memory halves the batch (same output as an unsplit
run), out of memory at one pair fails that video only, `auto` sizes from the memory formula,
and --flow-compile reaches tvl1. OOM is simulated on the CPU by a tvl1 that raises
torch.cuda.OutOfMemoryError for the batches the test chooses."""
import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from flow_tools import batched, tvl1_torch
from flow_tools.extract import main
from flow_tools.extraction import extract_all
from flow_tools.params import ExtractConfig, FlowParams, TVL1Params
from two_stream.data.synthetic import SyntheticConfig, generate

FAST = TVL1Params(nscales=1, warps=1, outer_iterations=1, inner_iterations=5)
CFG = ExtractConfig(flow=FlowParams("tvl1", FAST, backend="torch"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two 48x32 videos and one 64x48 video (a frame size of its own: batches never mix
    sizes), 6 frames each."""
    root = tmp_path_factory.mktemp("batched")
    for name, (w, h) in {"small": (48, 32), "large": (64, 48)}.items():
        generate(root / name, SyntheticConfig(num_groups=2, clips_per_group=1, test_groups=1,
                                              num_frames=6, width=w, height=h), quiet=True)
    out = root / "videos"
    for rel in ("MoveUp/v_MoveUp_g01_c01.avi", "Grow/v_Grow_g02_c01.avi"):
        (out / "S" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "small" / "videos" / rel, out / "S" / rel)
    (out / "L").mkdir(parents=True)
    shutil.copy(root / "large" / "videos" / "MoveUp/v_MoveUp_g01_c01.avi", out / "L" / "big.avi")
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "meta.json"}


def _metas(root: Path) -> dict[str, dict]:
    return {p.parent.relative_to(root).as_posix(): json.loads(p.read_text())
            for p in root.rglob("meta.json")}


def _recording_tvl1(monkeypatch, fail=lambda prev: False) -> list[tuple[int, bool]]:
    """Replace batched.tvl1: records (batch size, compiled) of every call and raises CUDA's
    out-of-memory error where `fail(prev)` says so."""
    calls = []
    real = batched.tvl1

    def tvl1(prev, nxt, params=None, device=None, *, compiled=False):
        calls.append((prev.shape[0], compiled))
        if fail(prev):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 26 GiB")
        return real(prev, nxt, params, device)
    monkeypatch.setattr(batched, "tvl1", tvl1)
    return calls


def test_out_of_memory_halves_the_batch_and_gives_the_unsplit_output(videos, tmp_path,
                                                                       monkeypatch, caplog):
    rels = ["S/MoveUp/v_MoveUp_g01_c01.avi", "S/Grow/v_Grow_g02_c01.avi"]
    ref = extract_all(videos, tmp_path / "ref", CFG, rels, quiet=True, batch_pairs=8)
    calls = _recording_tvl1(monkeypatch, fail=lambda prev: prev.shape[0] > 2)
    with caplog.at_level(logging.WARNING, logger="flow_tools.batched"):
        s = extract_all(videos, tmp_path / "oom", CFG, rels, quiet=True, batch_pairs=8)
    assert (s.done, s.failed) == (ref.done, ref.failed) == (2, 0)
    assert _files(tmp_path / "oom") == _files(tmp_path / "ref")  # every JPEG, byte for byte
    # 10 pairs: 8 fails, its first half (4) fails, then all at 2, the size known to fit
    assert [n for n, _ in calls] == [8, 4, 2, 2, 2, 2, 2]
    assert ("out of device memory at a batch of 8 pairs (48x32) on cpu: retrying at 4 pairs "
            "per batch") in caplog.text
    refs, ooms = _metas(tmp_path / "ref"), _metas(tmp_path / "oom")
    for vid, meta in ooms.items():
        assert meta["flow_backend"].pop("out_of_memory")["batch_pairs"] == 2
        assert meta == refs[vid]  # nothing else differs


def test_out_of_memory_at_one_pair_fails_that_video_only(videos, tmp_path, monkeypatch):
    _recording_tvl1(monkeypatch, fail=lambda prev: prev.shape[-1] == 64)  # the 64x48 video
    out = tmp_path / "out"
    rc = main([str(videos), str(out), "--backend", "torch", "--tvl1-nscales", "1",
               "--tvl1-warps", "1", "--tvl1-outer-iterations", "1",
               "--tvl1-inner-iterations", "5", "--batch-pairs", "4", "--flow-compile", "off",
               "--quiet"])
    assert rc == 1  # done, some failed
    with open(out / "failures.csv") as f:
        rows = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    assert list(rows) == ["L/big.avi"]
    assert rows["L/big.avi"].startswith("out of device memory for one pair at 64x48 on cpu")
    assert set(_metas(out)) == {"S/MoveUp/v_MoveUp_g01_c01", "S/Grow/v_Grow_g02_c01"}
    assert not (out / "L" / "big").exists() and not list(out.rglob(".*tmp*"))


def test_auto_sizes_the_batch_from_the_memory_formula(videos, tmp_path, monkeypatch, caplog):
    rels = ["S/MoveUp/v_MoveUp_g01_c01.avi", "S/Grow/v_Grow_g02_c01.avi"]
    asked = []

    def peak_bytes_per_pair(height, width, params=None):
        asked.append((height, width, params))
        return 2 ** 30  # 1 GiB per pair
    monkeypatch.setattr(tvl1_torch, "peak_bytes_per_pair", peak_bytes_per_pair)
    calls = _recording_tvl1(monkeypatch)
    with caplog.at_level(logging.INFO, logger="flow_tools.batched"):
        extract_all(videos, tmp_path / "auto", CFG, rels, quiet=True, batch_pairs="auto",
                    memory_budget_gb=3.0)
    # 0.8 x 3 GiB holds 2 pairs of 1 GiB; sized once for the one frame size
    assert max(n for n, _ in calls) == 2 and asked == [(32, 48, FAST)]
    assert "--batch-pairs auto: 2 pairs per batch at 48x32 on cpu" in caplog.text
    monkeypatch.undo()
    extract_all(videos, tmp_path / "fixed", CFG, rels, quiet=True, batch_pairs=5)
    assert _files(tmp_path / "auto") == _files(tmp_path / "fixed")


def test_auto_batch_bounds(monkeypatch):
    params = TVL1Params()
    per_pair = 10 * 2 ** 20
    monkeypatch.setattr(tvl1_torch, "peak_bytes_per_pair", lambda h, w, p=None: per_pair)
    assert batched.auto_batch_pairs(256, 340, params, 100 * 2 ** 20) == 8
    assert batched.auto_batch_pairs(256, 340, params, 2 ** 20) == 1  # never 0
    assert batched.auto_batch_pairs(256, 340, params, 2 ** 40) == batched.AUTO_MAX_PAIRS


def test_flow_compile_reaches_tvl1(videos, tmp_path, monkeypatch):
    calls = _recording_tvl1(monkeypatch)
    monkeypatch.setattr(tvl1_torch, "resolve_flow_compile",
                        lambda mode, device, *, interactive: mode == "on" and not interactive)
    common = [str(videos), "--list", "LIST", "--backend", "torch", "--tvl1-nscales", "1",
              "--tvl1-warps", "1", "--tvl1-outer-iterations", "1", "--quiet"]
    (tmp_path / "list.txt").write_text("S/Grow/v_Grow_g02_c01.avi\n")
    for mode, want in (("on", True), ("off", False)):
        calls.clear()
        args = [a.replace("LIST", str(tmp_path / "list.txt")) for a in common]
        assert main([args[0], str(tmp_path / mode), *args[1:], "--flow-compile", mode]) == 0
        assert calls and all(c == want for _, c in calls)


def test_bad_batch_pairs_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), str(tmp_path / "o"), "--backend", "torch", "--batch-pairs", "0"])
    assert e.value.code == 2 and "--batch-pairs: must be >= 1" in capsys.readouterr().err
