import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.layouts import conv_layouts

from flow_tools.errors import UserError
from two_stream import cli
from two_stream.config import CONCERNS, MODALITY_DEFAULTS, Config, add_config_args, config_from_args
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import VideoFileSource
from two_stream.data.splits import resolve_records
from two_stream.data.synthetic import SyntheticConfig
from two_stream.engine.checkpoint import load_checkpoint
from two_stream.engine.sampler import drops_last, train_steps
from two_stream.engine.train import fit
from two_stream.models.tsn import TSN, ModelConfig
from two_stream.scores import load_scores

TINY = SyntheticConfig(num_groups=4, clips_per_group=2, test_groups=1, num_frames=12,
                       width=64, height=48)


@pytest.fixture(scope="module")
def syn(tiny):
    assert tiny.config == TINY
    return tiny.root  # shared, read-only: frames/, splits/, videos/


def _args(syn: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--run-dir", str(run_dir), "--input-size", "32", "--scale-size", "40",
            "--num-segments", "2", "--test-segments", "3", "--batch-size", "8",
            "--workers", "0", "--lr", "0.01", "--dropout", "0.2", "--quiet", "--device", "cpu",
            *extra]


def _cfgs(argv: list[str], modality="rgb") -> Config:
    p = argparse.ArgumentParser()
    add_config_args(p, MODALITY_DEFAULTS[modality])
    return config_from_args(p.parse_args(argv))


@pytest.mark.parametrize("consensus", ["mean", "max", "var", "lstm"])
def test_loss_falls_when_overfitting_a_few_clips(syn, consensus):
    src = VideoFileSource(syn / "videos")
    from two_stream.data.splits import ucf101_split
    recs = ucf101_split(syn / "splits", 1).train[::12][:6]
    recs = resolve_records(recs, src.counts([r.video_id for r in recs]))
    ds = VideoDataset(recs, src, ClipConfig(input_size=32, num_segments=2), train=True)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([r.label for r in recs])
    torch.manual_seed(0)
    model = TSN(ModelConfig(num_classes=12, consensus=consensus, dropout=0.0, lstm_hidden=32))
    opt = torch.optim.SGD([p for _, p in model.trainable_parameters()], lr=0.02, momentum=0.9)
    losses = []
    for _ in range(25):
        loss, _ = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.5 * losses[0]


@pytest.mark.e2e
def test_resume_equals_unbroken_training(syn, tmp_path):
    argv = ["--epochs", "4", "--schedule", "cosine", "--warmup-epochs", "1",
            "--val-ratio", "0.2"]
    whole = fit(_cfgs(_args(syn, tmp_path / "whole", *argv)))
    broken_cfgs = _cfgs(_args(syn, tmp_path / "broken", *argv))
    fit(broken_cfgs, stop_after_epoch=2)
    assert load_checkpoint(tmp_path / "broken" / "checkpoint_last.pt")["epoch"] == 2
    fit(_cfgs(_args(syn, tmp_path / "broken", *argv, "--resume")))
    a = load_checkpoint(whole / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "broken" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for s, t in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(s["momentum_buffer"], t["momentum_buffer"])
    log = (tmp_path / "broken" / "log.csv").read_text().splitlines()
    assert len(log) == 5 and log[0].startswith("epoch,lr,train_loss")
    for name in ("config.json", "curves.png", "checkpoint_best.pt"):
        assert (tmp_path / "broken" / name).exists()
    # the checkpoint is plain: it loads with weights_only=True and holds the config
    ck = torch.load(whole / "checkpoint_last.pt", weights_only=True)
    assert ck["config"]["model"]["num_classes"] == 12 and len(ck["classes"]) == 12


@pytest.fixture(scope="module")
def trained_flow_run(syn, tmp_path_factory):
    run = tmp_path_factory.mktemp("flowrun")
    rc = cli.main(["train", *_args(syn, run, "--epochs", "1", "--new-length", "3",
                                   "--val-ratio", "0.2")], stream="temporal", modality="flow")
    assert rc == 0
    return run


@pytest.mark.e2e
def test_evaluate_writes_a_score_file(syn, trained_flow_run, capsys):
    rc = cli.main(["evaluate", "--run-dir", str(trained_flow_run), "--test-crops", "3"],
                  stream="temporal", modality="flow")
    assert rc == 0
    sf = load_scores(trained_flow_run / "scores_test.npz")
    assert sf.scores.shape == (24, 12) and sf.snippet_scores.shape == (24, 3, 12)
    assert sf.meta["modality"] == "flow" and sf.meta["crops"] == 3
    assert sf.video_ids[0].count("/") == 1 and (sf.labels >= 0).all()
    out = capsys.readouterr().out
    assert "top-1" in out and "mean class accuracy" in out
    # mean consensus: the video score is the mean of the snippet scores
    assert np.allclose(sf.scores, sf.snippet_scores.astype(np.float32).mean(1), atol=0.05)


@pytest.mark.e2e
def test_two_process_gloo_evaluation_equals_one_process(syn, trained_flow_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_flow_run, run)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "two_stream.temporal",
                    "evaluate", "--run-dir", str(run), "--device", "cpu", "--quiet"],
                   check=True, env=env, capture_output=True)
    two = load_scores(run / "scores_test.npz")
    rc = cli.main(["evaluate", "--run-dir", str(run), "--device", "cpu", "--quiet"],
                  stream="temporal", modality="flow")
    assert rc == 0
    one = load_scores(run / "scores_test.npz")
    assert two.video_ids == one.video_ids
    assert np.allclose(two.scores, one.scores, atol=1e-4)


@pytest.mark.e2e
def test_predict_one_video(syn, trained_flow_run, capsys):
    video = syn / "videos" / "Grow" / "v_Grow_g01_c01.avi"
    rc = cli.main(["predict", str(video), "--checkpoint",
                   str(trained_flow_run / "checkpoint_best.pt"), "--device", "cpu"],
                  stream="temporal", modality="flow")
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "temporal:" and len(lines) == 6 and all("%" in ln for ln in lines[1:])


@pytest.mark.parametrize("extra,message", [
    (["--arch", "resnet17"], "unknown arch 'resnet17'"),
    (["--split", "4"], "trainlist04.txt: split file not found"),  # the set has splits 1-3
])
def test_bad_flags_end_in_one_line_errors(syn, tmp_path, capsys, extra, message):
    rc = cli.main(["train", *_args(syn, tmp_path / "r", "--epochs", "1", *extra)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and message in err and "\n" not in err


def test_rgb_weights_for_the_flow_stream_are_refused(syn, tmp_path, capsys):
    from two_stream.models.backbones import build_backbone
    net, _ = build_backbone("resnet18", "none", 3)
    torch.save(net.state_dict(), tmp_path / "rgb.pt")
    rc = cli.main(["train", *_args(syn, tmp_path / "r", "--epochs", "1", "--weights",
                                   str(tmp_path / "rgb.pt"))], stream="temporal",
                  modality="flow")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "conv1 has 3 input channels but this stream needs 10" in err


@pytest.mark.e2e
def test_config_round_trip_and_help(syn, trained_flow_run, capsys):
    import json
    saved = json.loads((trained_flow_run / "config.json").read_text())
    assert set(CONCERNS) <= set(saved) and saved["clip"]["new_length"] == 3
    args = cli.parse(["train", "--config", str(trained_flow_run / "config.json"), "--epochs",
                      "7"], "temporal", "flow")
    cfg = config_from_args(args)
    assert cfg.clip.new_length == 3 and cfg.optim.epochs == 7
    assert cfg.optim.lr_mult_first_conv == 5.0  # the temporal stream's TSN default
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"], stream="temporal", modality="flow")
    text = " ".join(capsys.readouterr().out.split())
    assert "--test-segments TEST_SEGMENTS segments at test time (25: the TSN protocol) " \
           "(default: 25)" in text


def test_chunked_views_equal_one_pass():
    """25 segments x 10 crops split into small chunks give the same scores as one pass."""
    from two_stream.engine.evaluate import score_views
    torch.manual_seed(0)
    for consensus in ("var", "lstm"):
        model = TSN(ModelConfig(num_classes=4, consensus=consensus, lstm_hidden=8)).eval()
        x = torch.randn(2, 10, 5, 3, 32, 32)  # [B, crops, S, C, H, W]
        v1, s1 = score_views(model, x, 1000, torch.device("cpu"))
        v2, s2 = score_views(model, x, 7, torch.device("cpu"))
        assert v1.shape == (2, 4) and s1.shape == (2, 5, 4)
        assert torch.allclose(v1, v2, atol=1e-5) and torch.allclose(s1, s2, atol=1e-5)


@pytest.mark.e2e
def test_two_process_gloo_training(syn, tmp_path):
    """torchrun with 2 CPU processes: DDP trains, rank 0 alone writes the run directory."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = tmp_path / "ddp"
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "two_stream.spatial", "train",
                    *_args(syn, run, "--epochs", "1", "--device", "cpu", "--val-ratio", "0.2")],
                   check=True, env=env, capture_output=True)
    ck = load_checkpoint(run / "checkpoint_last.pt")
    # --batch-size is the global batch: 4 per rank, 48 training videos -> 6 steps
    assert ck["epoch"] == 1 and ck["step"] == 6
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 2


@pytest.mark.e2e
def test_folder_dataset_trains_from_video_files(syn, tmp_path):
    """--dataset folder: <Class>/<video> files, split generated and saved, RGB from videos."""
    videos = tmp_path / "my_videos"
    shutil.copytree(syn / "videos", videos)
    rc = cli.main(["train", "--dataset", "folder", "--videos", str(videos), "--run-dir",
                   str(tmp_path / "run"), "--epochs", "1", "--input-size", "32",
                   "--scale-size", "40", "--batch-size", "16", "--workers", "0", "--quiet",
                   "--device", "cpu"])
    assert rc == 0
    lists = tmp_path / "splits"
    assert (lists / "classInd.txt").exists() and (lists / "trainlist01.txt").exists()
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["epoch"] == 1


@pytest.mark.parametrize("n,batch,world", [(10, 4, 1), (8, 4, 1), (3, 4, 1), (11, 2, 2),
                                           (7, 3, 2), (4, 4, 2), (1, 8, 1), (13, 5, 3)])
def test_schedule_steps_equal_loader_batches(n, batch, world):
    """The cosine schedule counts exactly the batches the loader yields (it drops the last
    partial one), on every rank."""
    from torch.utils.data import DataLoader, DistributedSampler
    ds = list(range(n))
    for rank in range(world):
        sampler = DistributedSampler(ds, world, rank, shuffle=False) if world > 1 else None
        loader = DataLoader(ds, batch_size=batch, sampler=sampler,
                            drop_last=drops_last(n, batch, world))
        assert train_steps(n, batch, world) == len(loader) == sum(1 for _ in loader)


@pytest.mark.e2e
def test_evaluate_val_without_hold_out_is_a_clear_error(syn, trained_flow_run, capsys):
    rc = cli.main(["evaluate", *_args(syn, trained_flow_run, "--val-ratio", "0"),
                   "--eval-split", "val"], stream="temporal", modality="flow")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no videos to score" in err and "--val-ratio is 0" in err


@pytest.mark.e2e
def test_kill_during_evaluate_then_rerun_gives_the_same_scores(syn, trained_flow_run,
                                                                tmp_path):
    """SIGKILL at several points of a real `evaluate` process: the score file is absent or
    complete after every kill, and the rerun writes the scores of an unbroken run."""
    from helpers.kill import run_and_kill, timed
    run = tmp_path / "run"
    shutil.copytree(trained_flow_run, run)
    for f in run.glob("scores_*.npz"):
        f.unlink()
    cmd = [sys.executable, "-m", "two_stream.temporal", "evaluate", "--run-dir", str(run),
           "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    took = timed(cmd, env)
    ref = load_scores(run / "scores_test.npz")
    (run / "scores_test.npz").unlink()
    for fraction in (0.6, 0.9):
        run_and_kill(cmd, took * fraction, env)
        visible = [p for p in run.iterdir() if p.name.startswith("scores")]
        for p in visible:  # never a partial file under the real name
            load_scores(p)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    again = load_scores(run / "scores_test.npz")
    np.testing.assert_array_equal(again.scores, ref.scores)
    np.testing.assert_array_equal(again.snippet_scores, ref.snippet_scores)
    assert again.video_ids == ref.video_ids
    assert not list(run.glob(".scores_test.npz.tmp-*"))  # leftovers of the killed runs gone


@pytest.mark.e2e
def test_gradient_accumulation_equals_the_large_batch(syn, tmp_path):
    """--accumulate 2 (micro-batches of 4) ends with the weights of plain batches of 8: same
    samples, same order, same steps. A frozen backbone (no batch statistics) and no dropout,
    so only the summation order differs."""
    common = ("--epochs", "2", "--freeze-backbone", "--dropout", "0", "--val-ratio", "0",
              "--clip-grad", "0")
    whole = fit(_cfgs(_args(syn, tmp_path / "whole", *common)))
    accum = fit(_cfgs(_args(syn, tmp_path / "accum", *common, "--accumulate", "2")))
    a = load_checkpoint(whole / "checkpoint_last.pt")
    b = load_checkpoint(accum / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 18  # 72 training videos / batch 8 x 2 epochs
    for k, v in a["model"].items():
        if v.is_floating_point():
            assert torch.allclose(v, b["model"][k], atol=1e-5), k
    # and the head did learn (the comparison is not between two untouched models)
    assert a["best_val_top1"] >= 0 and not torch.allclose(
        a["model"]["head.1.weight"], TSN(ModelConfig(num_classes=12)).head[1].weight, atol=1e-3)
    with pytest.raises(UserError, match="--accumulate 3 must divide the per-process batch"):
        fit(_cfgs(_args(syn, tmp_path / "bad", *common, "--accumulate", "3")))


def test_persistent_workers_still_reach_each_epochs_sampling(syn, tmp_path):
    """One DataLoader with persistent workers for all epochs: every epoch draws other samples,
    and 2 workers give exactly the samples of 0 workers."""
    from torch.utils.data import DataLoader

    from two_stream.data.build import build_data
    from two_stream.engine.sampler import EpochSampler
    cfg = _cfgs(_args(syn, tmp_path / "r", "--num-segments", "2"))
    data = build_data(cfg.data, cfg.clip)
    ds = VideoDataset(data.train[:6], data.source, cfg.clip, train=True, seed=0)
    got = {}
    for workers in (0, 2):
        sampler = EpochSampler(len(ds), seed=0)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=workers,
                            persistent_workers=workers > 0)
        per_epoch = []
        for epoch in (1, 2):
            sampler.set_epoch(epoch)
            per_epoch.append(torch.cat([x for x, _, _ in loader]))
        got[workers] = per_epoch
    assert not torch.equal(got[0][0], got[0][1])  # new draws each epoch
    assert all(torch.equal(a, b) for a, b in zip(got[0], got[2]))


@pytest.mark.e2e
def test_ddp_keeps_ranks_in_sync_on_different_data(tmp_path):
    """2 gloo processes see different data; after two accumulated steps their weights are
    identical (the gradients were all-reduced) while their data differ."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([str(torchrun), "--nproc_per_node", "2", str(Path(__file__).parent /
                                                                "ddp_check.py"), str(tmp_path)],
                   check=True, env=env, capture_output=True)
    (w0, d0), (w1, d1) = [map(float, (tmp_path / f"rank{r}.txt").read_text().split())
                          for r in (0, 1)]
    assert d0 != d1 and w0 == w1


@pytest.mark.e2e
def test_bf16_and_channels_last_reach_every_convolution(syn, tmp_path):
    """With --amp bf16 --channels-last on, every convolution of training and of evaluation
    gets NHWC inputs and weights and computes in bf16; with both off, none does (so the test
    fails if a switch does nothing)."""
    with conv_layouts() as seen:
        for amp, cl in (("bf16", "on"), ("off", "off")):
            seen.clear()
            run = fit(_cfgs(_args(syn, tmp_path / amp, "--epochs", "1", "--amp", amp,
                                  "--channels-last", cl, "--val-ratio", "0.2")))
            train_seen = list(seen)
            seen.clear()
            assert cli.main(["evaluate", "--run-dir", str(run), "--amp", amp,
                             "--channels-last", cl, "--test-segments", "2"]) == 0
            for phase in (train_seen, seen):
                assert phase
                if amp == "bf16":
                    assert all(i and w and d == torch.bfloat16 for i, w, d in phase)
                else:
                    assert not any(i or w for i, w, _ in phase)
                    assert all(d == torch.float32 for _, _, d in phase)
    with pytest.raises(UserError, match="--amp fp16 needs CUDA"):
        fit(_cfgs(_args(syn, tmp_path / "fp16", "--epochs", "1", "--amp", "fp16")))


@pytest.mark.e2e
def test_decode_gpu_path_trains_and_evaluates_on_cpu(syn, tmp_path):
    """--decode gpu (JPEG bytes from the workers, decoded by torchvision in the main process)
    runs the whole train / evaluate loop; on a CPU it is the code path CUDA takes."""
    run = tmp_path / "gpu_decode"
    assert cli.main(["train", *_args(syn, run, "--epochs", "1", "--decode", "gpu",
                                     "--workers", "1", "--val-ratio", "0.2")],
                    stream="temporal", modality="flow") == 0
    assert cli.main(["evaluate", "--run-dir", str(run), "--decode", "gpu", "--test-crops", "3"],
                    stream="temporal", modality="flow") == 0
    sf = load_scores(run / "scores_test.npz")
    assert sf.scores.shape == (24, 12) and np.isfinite(sf.scores).all()
    import csv
    row = next(csv.DictReader(open(run / "log.csv")))
    assert np.isfinite(float(row["val_loss"]))


@pytest.mark.e2e
def test_evaluate_saves_snippet_features(syn, trained_flow_run, tmp_path):
    """--save-features: pooled backbone features per test snippet, crops averaged, keyed by
    video id; the head applied to them gives back the scores; --feature-stride S takes a
    snippet every S frames instead of the test segments."""
    run = tmp_path / "feat"
    shutil.copytree(trained_flow_run, run)
    assert cli.main(["evaluate", "--run-dir", str(run), "--save-features", "--test-crops", "3"],
                    stream="temporal", modality="flow") == 0
    sf = load_scores(run / "scores_test.npz")
    with np.load(run / "features_test.npz") as z:
        feats, offsets, ids = z["features"], z["offsets"], list(z["video_ids"])
    assert ids == sf.video_ids and feats.dtype == np.float16
    assert feats.shape == (len(ids) * 3, 512) and offsets.tolist() == list(range(0, 3 * 25, 3))
    ck = load_checkpoint(run / "checkpoint_best.pt")
    from two_stream.engine.checkpoint import build_model_from_checkpoint
    model = build_model_from_checkpoint(ck).eval()
    with torch.no_grad():  # mean consensus: the video score is the mean of the segment logits
        video = model.head(torch.from_numpy(feats.astype(np.float32))).view(len(ids), 3, -1)
    assert np.allclose(video.mean(1).numpy(), sf.scores, atol=0.05)
    assert cli.main(["evaluate", "--run-dir", str(run), "--save-features", "--feature-stride",
                     "4"], stream="temporal", modality="flow") == 0
    with np.load(run / "features_test.npz") as z:
        counts = np.diff(z["offsets"])
        meta = json.loads(str(z["meta"]))
    assert meta["feature_stride"] == 4 and (counts == 11 // 4).all()  # 11 flow fields


@pytest.mark.e2e
def test_prob_averaging_of_views_and_topk_consensus_through_evaluate(syn, trained_flow_run,
                                                                     tmp_path):
    from two_stream.engine.evaluate import score_views
    torch.manual_seed(0)
    model = TSN(ModelConfig(num_classes=4, modality="flow", new_length=1,
                            consensus="topk", topk_segments=2)).eval()
    x = torch.randint(0, 256, (2, 3, 4, 2, 32, 32), dtype=torch.uint8)  # [B, crops, S, ...]
    logit, _ = score_views(model, x, 64, torch.device("cpu"))
    prob, _ = score_views(model, x, 64, torch.device("cpu"), average="prob")
    per_crop = torch.stack([score_views(model, x[:, c:c + 1], 64, torch.device("cpu"))[0]
                            for c in range(3)], 1)  # [B, crops, C]
    assert torch.allclose(logit, per_crop.mean(1), atol=1e-5)
    assert torch.allclose(prob.exp(), per_crop.softmax(-1).mean(1), atol=1e-5)


@pytest.mark.e2e
def test_resume_with_other_settings_is_a_one_line_error(syn, tmp_path, capsys):
    run = tmp_path / "r"
    assert cli.main(["train", *_args(syn, run, "--epochs", "1", "--val-ratio", "0")]) == 0
    rc = cli.main(["train", *_args(syn, run, "--epochs", "2", "--val-ratio", "0", "--lr",
                                   "0.02", "--resume")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "was trained with other settings (optim.lr: 0.01 -> 0.02)" in err
    # more epochs alone is a resume
    assert cli.main(["train", *_args(syn, run, "--epochs", "2", "--val-ratio", "0",
                                     "--resume")]) == 0
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 2


@pytest.mark.e2e
def test_resume_from_a_changed_weights_file_is_another_run(syn, tmp_path, capsys):
    """Same path, other bytes: the weights digest is part of the run's identity."""
    weights = tmp_path / "cnn.pt"
    torch.save(TSN(ModelConfig(num_classes=4)).backbone.state_dict(), weights)
    run = tmp_path / "r"
    base = _args(syn, run, "--val-ratio", "0", "--weights", str(weights))
    assert cli.main(["train", *base, "--epochs", "1"]) == 0
    ck = load_checkpoint(run / "checkpoint_last.pt")
    assert ck["weights_sha256"] and len(ck["weights_sha256"]) == 64
    assert json.loads((run / "config.json").read_text())["weights_sha256"] == ck["weights_sha256"]
    torch.manual_seed(1)
    torch.save(TSN(ModelConfig(num_classes=4)).backbone.state_dict(), weights)
    rc = cli.main(["train", *base, "--epochs", "2", "--resume"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "weights_sha256: " in err and "\n" not in err


def test_validation_hold_out_does_not_follow_the_training_seed(syn):
    from two_stream.data.build import build_data
    argv = ["--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--val-ratio", "0.3"]
    a = build_data(*(getattr(_cfgs([*argv, "--seed", "0"]), k) for k in ("data", "clip")))
    b = build_data(*(getattr(_cfgs([*argv, "--seed", "5"]), k) for k in ("data", "clip")))
    c = build_data(*(getattr(_cfgs([*argv, "--val-seed", "5"]), k) for k in ("data", "clip")))
    ids = lambda recs: sorted(r.video_id for r in recs)  # noqa: E731
    assert ids(a.val) == ids(b.val) and ids(a.val)
    assert ids(a.val) != ids(c.val)


@pytest.mark.e2e
def test_mmaction_annotation_lists_train_and_evaluate(syn, tmp_path):
    """--dataset mmaction: the synthetic split written as MMAction2 rawframe lists gives the
    same records, and trains and scores through the stream CLI."""
    from two_stream.data.splits import ucf101_split
    split = ucf101_split(syn / "splits", 1)
    lists = tmp_path / "lists"
    lists.mkdir()
    for part, recs in (("train", split.train), ("val", split.test)):
        (lists / f"syn_{part}_split_1_rawframes.txt").write_text(
            "".join(f"{r.video_id} 12 {r.label}\n" for r in recs))
    run = tmp_path / "r"
    argv = [a if a != str(syn / "splits") else str(lists) for a in _args(syn, run)]
    assert cli.main(["train", *argv, "--dataset", "mmaction", "--epochs", "1",
                     "--val-ratio", "0"], stream="temporal", modality="flow") == 0
    assert cli.main(["evaluate", "--run-dir", str(run)], stream="temporal",
                    modality="flow") == 0
    sf = load_scores(run / "scores_test.npz")
    assert sf.video_ids == [r.video_id for r in split.test]
    assert sf.classes == split.classes and sf.labels.tolist() == [r.label for r in split.test]


@pytest.mark.e2e
def test_compile_trains_the_same_network(syn, tmp_path, monkeypatch):
    """--compile runs the training steps through torch.compile (here with its aot_eager
    backend: the same graph capture, forward and backward, without inductor's C++ build) and
    saves the plain module's weights: the same keys as an eager run, the same values within
    float tolerance, and the run resumes and evaluates like any other."""
    calls = []
    real = torch.compile

    def compile_(model, **kw):
        calls.append(type(model).__name__)
        return real(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_)
    common = ("--epochs", "1", "--dropout", "0", "--val-ratio", "0.2")
    eager = fit(_cfgs(_args(syn, tmp_path / "eager", *common)))
    assert calls == []
    compiled = fit(_cfgs(_args(syn, tmp_path / "compiled", *common, "--compile")))
    assert calls == ["TSN"]
    a = load_checkpoint(eager / "checkpoint_last.pt")
    b = load_checkpoint(compiled / "checkpoint_last.pt")
    assert a["model"].keys() == b["model"].keys()  # no "_orig_mod." prefix
    for k, v in a["model"].items():
        if v.is_floating_point():
            assert torch.allclose(v, b["model"][k], atol=1e-4, rtol=1e-3), k
    # both trained: the weights left their common initialisation (seed 0)
    torch.manual_seed(0)
    init = TSN(ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in a["config"]["model"].items()})).state_dict()
    assert not torch.allclose(init["head.1.weight"], b["model"]["head.1.weight"], atol=1e-3)
    assert b["config"]["run"]["compile"] is True
