"""Recipes: the presets of the benchmark suite (`cpu-demo`, `tsn`) as the stream configs they
resolve to, and the train-or-reuse step the suite, the sweep and the flow-backend comparison
share.

A recipe is data: per-stream overrides of the stream CLIs' TSN defaults (`MODALITY_DEFAULTS`),
merged as `defaults < preset common < preset per-modality < command-line overrides`.
`stream_configs` turns one into the same dataclasses `spatial train` / `temporal train` build,
so a suite run and a hand-typed training run of the same settings are the same run (the same
identity, see `engine.train.identity_diff`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from flow_tools.extraction import Summary, extract_all
from flow_tools.params import LIGHT_TVL1, ExtractConfig, FlowParams

from .config import (
    MODALITY_DEFAULTS,
    Config,
    DataConfig,
    OptimConfig,
    RunConfig,
    merge_concerns,
)
from .data.build import build_data
from .data.datasets import ClipConfig
from .data.splits import Split
from .data.synthetic import MANIFEST, SyntheticConfig, generate
from .engine import distributed as dist
from .engine.checkpoint import identity_diff, load_checkpoint, saved_config
from .engine.train import fit
from .errors import UserError
from .metrics import class_mean, topk_accuracy, topk_correct
from .models.tsn import ModelConfig
from .score_checkpoint import write_scores
from .scores import ScoreFile, load_scores

log = logging.getLogger("two_stream.recipes")
STREAMS = {"spatial": "rgb", "temporal": "flow"}
CONSENSUS = ("mean", "max", "var", "lstm")

# Presets: per-stream overrides of the stream CLIs' TSN defaults. `tsn` is the published
# recipe for a GPU; `cpu-demo` trains from scratch on the synthetic set in minutes on 2 cores.
PRESETS = {
    "cpu-demo": {
        "common": {"clip": {"input_size": 64, "scale_size": 72, "num_segments": 3,
                            "test_segments": 10, "test_crops": 1},
                   "model": {"arch": "resnet18", "weights": "none", "dropout": 0.5,
                             "lstm_hidden": 128},
                   "optim": {"epochs": 10, "lr": 0.01, "schedule": "cosine",
                             "warmup_epochs": 1, "clip_grad": 20.0, "lr_mult_first_conv": 1.0},
                   "data": {"batch_size": 16, "workers": 2, "val_ratio": 0.15,
                            "eval_batch_size": 8}},
        "flow": FlowParams("tvl1", LIGHT_TVL1),
        "new_short": 0, "new_size": None,
    },
    "tsn": {
        "common": {"clip": {"input_size": 224, "scale_size": 256, "num_segments": 3,
                            "test_segments": 25, "test_crops": 10},
                   "model": {"arch": "resnet101", "weights": "imagenet", "partial_bn": True},
                   "data": {"batch_size": 32, "workers": 8, "val_ratio": 0.1}},
        "flow": FlowParams("tvl1"), "new_short": 0, "new_size": (340, 256),
    },
}
# Per-data-set variants of a preset, merged over it. HMDB51 `tsn`: the RGB stream takes the
# values of MMAction2 0.x's configs/recognition/tsn/tsn_r50_1x1x8_50e_hmdb51_imagenet_rgb.py
# (with its _base_ tsn_r50.py, hmdb51_1x1x8_rgb.py, sgd_50e.py): ResNet-50 from ImageNet,
# BatchNorm not frozen (norm_eval=False), dropout 0.4, 8 segments, batch 32, SGD lr 0.025
# momentum 0.9 weight decay 1e-4, 50 epochs with steps at 20 and 40, gradient clipping at 20,
# 8 test segments, raw scores averaged (average_clips=None). Two differences: training crops
# are TSN's multi-scale crops, not RandomResizedCrop, and the test crop is 224 (MMAction2
# centre-crops 256). MMAction2 0.x has no HMDB51 flow config: the flow stream keeps the TSN
# recipe (MODALITY_DEFAULTS) with the same backbone.
DATASET_PRESETS = {
    ("tsn", "hmdb51"): {
        "common": {"model": {"arch": "resnet50", "partial_bn": False}},
        "modality": {"rgb": {
            "clip": {"num_segments": 8, "test_segments": 8, "test_crops": 1,
                     "average_views": "score"},
            "model": {"dropout": 0.4},
            "optim": {"lr": 0.025, "momentum": 0.9, "weight_decay": 1e-4, "epochs": 50,
                      "schedule": "step", "milestones": (20, 40), "gamma": 0.1,
                      "clip_grad": 20.0}}},
    },
}


def preset_for(name: str, dataset: str) -> dict:
    """A preset with its per-data-set variant merged in: `common` (both streams) and
    `modality` (`rgb` / `flow` stream only) overrides."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose from {sorted(PRESETS)}")
    base, extra = PRESETS[name], DATASET_PRESETS.get((name, dataset), {})
    out = dict(base, common=merge_concerns(base["common"], extra.get("common", {})))
    out["modality"] = {m: merge_concerns(base.get("modality", {}).get(m, {}),
                                         extra.get("modality", {}).get(m, {}))
                       for m in ("rgb", "flow")}
    return out


@dataclass(frozen=True)
class Overrides:
    """Command-line overrides of a preset (None: the preset's value). `input_size` also sets
    the resize scale, in TSN's 224 : 256 proportion."""
    arch: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    input_size: int | None = None
    num_segments: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Overrides:
        return cls(**{f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)})


_OVERRIDE_FIELDS = {"arch": ("model", "arch"), "epochs": ("optim", "epochs"),
                    "batch_size": ("data", "batch_size"), "input_size": ("clip", "input_size"),
                    "num_segments": ("clip", "num_segments")}


def parse_splits(values: list[str]) -> list[int]:
    """`--split 1 2 3` or `--split all` -> [1, 2, 3]."""
    if values == ["all"]:
        return [1, 2, 3]
    try:
        splits = [int(v) for v in values]
    except ValueError:
        raise UserError(f"--split {' '.join(values)}: give split numbers (1 2 3) or all"
                        ) from None
    if len(set(splits)) < len(splits) or min(splits) < 1:
        raise UserError(f"--split {' '.join(values)}: each split once, numbered from 1")
    return splits


def stream_configs(stream: str, consensus: str, *, preset: dict, dataset: str, split: int,
                   split_dir: Path, frames: Path, work: Path, seed: int, data_seed: int,
                   quiet: bool = False, overrides: Overrides = Overrides()) -> Config:
    """The config the stream CLIs build for one stream x consensus of a recipe, in
    `<work>/runs/split<split>/<stream>_<consensus>/`. `dataset` "synthetic" reads the
    generated set as UCF101 lists; `seed` seeds training, `data_seed` the validation hold-out.
    An `lstm` run starts from, and freezes, the CNN of the same stream's `mean` run."""
    modality = STREAMS[stream]
    over = merge_concerns(merge_concerns(MODALITY_DEFAULTS[modality], preset["common"]),
                          preset["modality"][modality])
    for name, (concern, field) in _OVERRIDE_FIELDS.items():
        if getattr(overrides, name) is not None:
            over[concern][field] = getattr(overrides, name)
    if overrides.input_size is not None:
        over["clip"]["scale_size"] = round(overrides.input_size * 256 / 224)
    runs = work / "runs" / f"split{split}"
    run_dir = runs / f"{stream}_{consensus}"
    model = dict(over.get("model", {}), consensus=consensus, modality=modality,
                 new_length=over["clip"]["new_length"])
    if consensus == "lstm":
        # the CNN-LSTM recipe: the LSTM head learns on the frozen CNN of the mean run
        model.update(freeze_backbone=True,
                     weights=str(runs / f"{stream}_mean" / "checkpoint_best.pt"))
    return Config(
        data=DataConfig(**{**over.get("data", {}),
                           "dataset": "ucf101" if dataset == "synthetic" else dataset,
                           "split": split, "split_dir": str(split_dir), "frames": str(frames),
                           "val_seed": data_seed}),
        clip=ClipConfig(**over["clip"]),
        model=ModelConfig(**model),
        optim=OptimConfig(**over["optim"]),
        run=RunConfig(run_dir=str(run_dir), seed=seed, resume=True, quiet=quiet),
    )


def score_metrics(sf: ScoreFile) -> dict[str, float]:
    """Top-1, top-5 and mean class accuracy of a score file, in %."""
    return {"top1": 100 * topk_accuracy(sf.scores, sf.labels, 1),
            "top5": 100 * topk_accuracy(sf.scores, sf.labels, 5),
            "mean_class_acc": 100 * class_mean(topk_correct(sf.scores, sf.labels), sf.labels,
                                               len(sf.classes))}


def scores_current(path: Path, epoch: int, clip: ClipConfig) -> bool:
    """A score file of this checkpoint epoch under this test protocol exists."""
    if not path.exists():
        return False
    meta = load_scores(path).meta
    return (meta.get("epoch"), meta.get("segments"), meta.get("crops"),
            meta.get("average_views")) == (epoch, clip.test_segments, clip.test_crops,
                                           clip.average_views)


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """The data set, preset and training overrides of the experiment commands (the suite, the
    sweep); `inputs_from_args` and `Overrides.from_args` read them back."""
    p.add_argument("--dataset", default="synthetic",
                   choices=("synthetic", "ucf101", "hmdb51", "mmaction"),
                   help="mmaction: MMAction2 annotation lists in --split-dir")
    p.add_argument("--videos", help="video root (ucf101/hmdb51: <Class>/<video>)")
    p.add_argument("--frames", help="existing rawframes (skips extraction)")
    p.add_argument("--split-dir", help="official split files (ucf101/hmdb51), or MMAction2 "
                                       "annotation lists (mmaction)")
    p.add_argument("--split", nargs="+", default=["1"], metavar="N",
                   help="split(s) 1..3, or all: each is run, then a table over the splits")
    p.add_argument("--preset", default="cpu-demo", choices=sorted(PRESETS))
    p.add_argument("--arch", help="override the preset's backbone")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--input-size", type=int, help="override the preset's input size")
    p.add_argument("--num-segments", type=int, help="override the preset's segments")
    p.add_argument("--synthetic-clips-per-group", type=int, help="smaller synthetic set")
    p.add_argument("--synthetic-groups", type=int, help="smaller synthetic set (a third of the "
                                                        "groups are the test split)")
    p.add_argument("--synthetic-frames", type=int, help="shorter synthetic clips")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the synthetic set and of the validation hold-out (fixed while "
                        "--seed varies training)")
    p.add_argument("--work-dir", default="data/demo", help="generated data, frames and runs")
    p.add_argument("--results-root", default="results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")



# --- inputs: the synthetic set, frames and flow ---------------------------------------------
@dataclass(frozen=True)
class DataInputs:
    """Where a recipe's videos and split lists are; for the synthetic set also its `manifest`
    (class groups, config) and its split 1 (`synthetic_split`), None for a real data set."""
    videos: Path
    split_dir: Path
    manifest: dict | None = None
    synthetic_split: Split | None = None


def synthetic_config(*, data_seed: int, clips_per_group: int | None = None,
                     groups: int | None = None, frames: int | None = None) -> SyntheticConfig:
    """The synthetic set of the demo, made smaller by the given sizes (a third of the groups
    are a split's test set)."""
    cfg = SyntheticConfig(seed=data_seed)
    if clips_per_group:
        cfg = dataclasses.replace(cfg, clips_per_group=clips_per_group)
    if groups:
        cfg = dataclasses.replace(cfg, num_groups=groups, test_groups=max(1, groups // 3))
    if frames:
        cfg = dataclasses.replace(cfg, num_frames=frames)
    return cfg


def prepare_data(*, dataset: str, work: Path, synthetic: SyntheticConfig | None = None,
                 videos: str | None = None, frames: str | None = None,
                 split_dir: str | None = None, quiet: bool = False) -> DataInputs:
    """A real data set's inputs as given (checked), or the synthetic set generated in
    `<work>/synthetic` (kept when complete with the same config)."""
    if dataset != "synthetic":
        if not split_dir or not (videos or frames):
            raise UserError(f"--dataset {dataset} needs --split-dir and --videos "
                            "(or --frames)")
        return DataInputs(Path(videos or ""), Path(split_dir))
    root = work / "synthetic"
    split = generate(root, synthetic or SyntheticConfig(), quiet=quiet)
    return DataInputs(root / "videos", root / "splits",
                      json.loads((root / MANIFEST).read_text()), split)


def inputs_from_args(args: argparse.Namespace) -> DataInputs:
    """`prepare_data` with the values of `add_recipe_args`' flags."""
    synthetic = synthetic_config(data_seed=args.data_seed,
                                 clips_per_group=args.synthetic_clips_per_group,
                                 groups=args.synthetic_groups, frames=args.synthetic_frames)
    return prepare_data(dataset=args.dataset, work=Path(args.work_dir), synthetic=synthetic,
                        videos=args.videos, frames=args.frames, split_dir=args.split_dir,
                        quiet=args.quiet)


def extract_frames(videos: Path, out: Path, *, preset: dict, flow: FlowParams | None = None,
                   quiet: bool = False) -> Summary:
    """Frames and flow of every video at the preset's sizes, with the preset's flow (or
    `flow`); videos already extracted with the same parameters are skipped."""
    cfg = ExtractConfig(flow=flow or preset["flow"], new_short=preset["new_short"],
                        new_size=preset["new_size"])
    return extract_all(videos, out, cfg=cfg, workers=os.cpu_count() or 1, quiet=quiet)


def frames_step(videos: Path, work: Path, *, preset: dict, frames: str | None = None,
                quiet: bool = False) -> Path:
    """The suite's and the sweep's rawframes: `frames` when given, else `work/frames` extracted
    with the preset (what was done and any failures printed, as the other steps do)."""
    if frames:
        return Path(frames)
    out = work / "frames"
    s = extract_frames(videos, out, preset=preset, quiet=quiet)
    print(f"frames and flow at {out}: {s.line()}")
    if s.failed:
        print(f"warning: {s.failed} videos failed, see {out / 'failures.csv'}")
    return out


# --- train or reuse -------------------------------------------------------------------------
TRAINING_OUTPUTS = ("checkpoint_", "scores_", "features_", "log.csv", "curves.png")


def _saved_diff(run_dir: Path, cfg: Config) -> tuple[dict | None, str]:
    """(the run's last checkpoint or None, how its settings differ from `cfg`: '' if not)."""
    last = run_dir / "checkpoint_last.pt"
    if not last.exists():
        return None, ""
    ck = load_checkpoint(last)
    return ck, identity_diff(saved_config(ck), cfg)


def run_finished(run_dir: Path, cfg: Config) -> bool:
    """A finished run of exactly these settings is in `run_dir` (reads only)."""
    ck, diff = _saved_diff(run_dir, cfg)
    return ck is not None and not diff and ck["epoch"] >= cfg.optim.epochs


def clear_run(run_dir: Path) -> list[Path]:
    """Delete a run's training outputs (checkpoints, scores, features, log, curves, the
    TensorBoard folder tb/); its config.json stays until training rewrites it, and its lock
    stays. Returns what was deleted."""
    gone = [f for f in run_dir.glob("*") if f.name.startswith(TRAINING_OUTPUTS)
            or (f.name == "tb" and f.is_dir())]
    for f in gone:
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    return gone


def reuse_or_clear(run_dir: Path, cfg: Config) -> bool:
    """True when a finished run of exactly these settings is in `run_dir` (reuse it). A run
    there made with other settings (an older preset, another seed) is deleted, so it is
    trained again, never reused silently; an unfinished one of these settings is kept for
    training to resume."""
    ck, diff = _saved_diff(run_dir, cfg)
    if ck is None:
        return False
    if diff:
        log.warning("%s: trained with other settings (%s): training again", run_dir, diff)
        clear_run(run_dir)
        return False
    return ck["epoch"] >= cfg.optim.epochs


@dataclass(frozen=True)
class StreamRun:
    """A trained run's score files (`val`, `test`) and whether it trained in this call."""
    scores: dict[str, Path]
    trained_now: bool


def train_and_score(cfg: Config, stream: str) -> StreamRun:
    """Train (or resume, or reuse) a run, then write scores_val.npz and scores_test.npz of its
    best checkpoint unless current ones exist."""
    run_dir = Path(cfg.run.run_dir)
    trained_now = not reuse_or_clear(run_dir, cfg)
    if trained_now:
        fit(cfg)
    ck_path = run_dir / "checkpoint_best.pt"
    ck = load_checkpoint(ck_path)
    data = build_data(cfg.data, cfg.clip)
    out = {}
    for split, records in (("val", data.val), ("test", data.test)):
        path = run_dir / f"scores_{split}.npz"
        out[split] = path
        if not scores_current(path, ck["epoch"], cfg.clip):
            write_scores(cfg, ck_path=ck_path, ck=ck, data=data, records=records, split=split,
                         stream=stream, device=dist.local_device("auto"))
    return StreamRun(out, trained_now)
