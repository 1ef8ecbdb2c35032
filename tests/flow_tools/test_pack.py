"""Packed rawframes (one file of JPEG bytes + an offset index per video) load exactly like the
loose JPEGs, through both decode paths; the converter is resumable and says what it did."""
import json
import shutil

import numpy as np
import pytest
import torch
from helpers.data import synthetic_rawframes

from flow_tools.pack import INDEX, PACK
from flow_tools.pack import main as pack_main
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import FrameReadError, RawframeSource
from two_stream.data.jpeg_batch import collate_jpeg, decode_samples
from two_stream.data.splits import VideoRecord, resolve_records
from two_stream.data.synthetic import SyntheticConfig


@pytest.fixture(scope="module")
def loose(tmp_path_factory):
    root = tmp_path_factory.mktemp("pk")
    return synthetic_rawframes(root / "syn", root / "rf",
                               SyntheticConfig(num_groups=2, clips_per_group=1, test_groups=1,
                                               num_frames=10, width=64, height=48))


def _samples(root, modality, length, decode="cpu"):
    src = RawframeSource(root)
    ids = ["Grow/v_Grow_g01_c01", "BlueDrift/v_BlueDrift_g02_c01"]
    recs = resolve_records([VideoRecord(v, 0) for v in ids], src.counts(ids))
    clip = ClipConfig(modality=modality, new_length=length, num_segments=3, input_size=32,
                      scale_size=40, test_segments=3, test_crops=3)
    out = []
    for train in (True, False):
        ds = VideoDataset(recs, src, clip, train=train, seed=1, decode=decode)
        items = [ds[(3, i)] for i in range(len(ds))]
        if decode == "gpu":
            out.append(decode_samples(collate_jpeg(items)[0], torch.device("cpu")))
        else:
            out.append(torch.stack([x for x, _, _ in items]))
    return out


def test_packed_videos_load_like_loose_jpegs(loose, tmp_path, capsys):
    packed = tmp_path / "packed"
    shutil.copytree(loose, packed)
    assert pack_main([str(packed), "--remove-jpegs", "--quiet"]) == 0
    assert "24 videos" in capsys.readouterr().out
    video = packed / "Grow" / "v_Grow_g01_c01"
    assert sorted(p.name for p in video.iterdir()) == sorted([INDEX, PACK, "meta.json"])
    index = json.loads((video / INDEX).read_text())
    assert (len(index["img"]), len(index["flow_x"]), len(index["flow_y"])) == (10, 9, 9)
    for modality, length in (("rgb", 1), ("flow", 3)):
        for decode in ("cpu", "gpu"):
            for a, b in zip(_samples(loose, modality, length, decode),
                            _samples(packed, modality, length, decode)):
                assert torch.equal(a, b)
    # a rerun packs nothing more
    assert pack_main([str(packed), "--quiet"]) == 0
    assert "0 JPEGs packed" in capsys.readouterr().out


def test_pack_errors_name_the_file(loose, tmp_path):
    packed = tmp_path / "p"
    shutil.copytree(loose, packed)
    video = packed / "Grow" / "v_Grow_g01_c01"
    pack_main([str(packed), "--quiet"])
    src = RawframeSource(packed)
    with pytest.raises(FrameReadError, match=r"frames.pack: no img image 11 \(the pack holds 10\)"):
        src.rgb_list("Grow/v_Grow_g01_c01", np.array([10]))
    data = (video / PACK).read_bytes()
    (video / PACK).write_bytes(data[:len(data) // 2])
    with pytest.raises(FrameReadError, match=r"frames.pack: truncated \(img image 10 ends"):
        RawframeSource(packed).rgb_list("Grow/v_Grow_g01_c01", np.array([9]))
    (video / PACK).unlink()
    with pytest.raises(FrameReadError, match=r"frames.pack: pack file missing"):
        RawframeSource(packed).rgb_list("Grow/v_Grow_g01_c01", np.array([0]))
    (video / INDEX).write_text("{broken")
    with pytest.raises(FrameReadError, match="frames.pack.json: corrupt pack index"):
        RawframeSource(packed).rgb_list("Grow/v_Grow_g01_c01", np.array([0]))
    (packed / "Grow" / "v_Grow_g02_c01" / "img_00004.jpg").unlink()  # a gap
    (packed / "Grow" / "v_Grow_g02_c01" / INDEX).unlink()
    assert pack_main([str(packed), "--quiet"]) == 2
