"""Run configuration: one dataclass per concern, flags generated from the fields, saved as JSON.

Every field becomes a `--flag` with its help text and default; `config.json` in the run
directory holds the resolved values and `--config run/config.json` reloads them (flags given
on the command line still win). `Config` holds one instance per concern; its JSON form
(`Config.to_dict`) is the shape of `config.json` and of a checkpoint's `config`, one object per
concern. No registry, no config framework.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .data.datasets import ClipConfig
from .errors import UserError
from .models.tsn import ModelConfig

# TSN's per-modality recipe (Wang et al. 2016 / tsn-pytorch): flow stacks 5 fields, trains
# longer with a higher lr, 5x lr on the adapted first conv, and clips gradients at 40.
MODALITY_DEFAULTS = {
    "rgb": {"clip": {"modality": "rgb", "new_length": 1},
            "model": {"dropout": 0.8},
            "optim": {"lr": 0.001, "epochs": 80, "milestones": (30, 60), "clip_grad": 20.0}},
    "flow": {"clip": {"modality": "flow", "new_length": 5},
             "model": {"dropout": 0.7},
             "optim": {"lr": 0.005, "epochs": 340, "milestones": (190, 300), "clip_grad": 40.0,
                       "lr_mult_first_conv": 5.0}},
}


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class DataConfig:
    dataset: str = _f("ucf101", "split format: ucf101 | hmdb51 | mmaction (MMAction2 "
                                "annotation lists) | folder",
                      choices=("ucf101", "hmdb51", "mmaction", "folder"))
    split: int = _f(1, "split number (UCF101/HMDB51: 1..3)")
    split_dir: str = _f("", "folder of the split files (UCF101: classInd.txt, trainlist0N.txt, "
                            "testlist0N.txt; HMDB51: <class>_test_splitN.txt; mmaction: "
                            "<name>_train_split_N_rawframes.txt and <name>_val_split_N_"
                            "rawframes.txt, or _videos.txt, optional classInd.txt or "
                            "label_map.txt; folder: where the generated lists are saved)")
    frames: str = _f("", "rawframe root (flow_tools.extract output); required for flow")
    videos: str = _f("", "video root: RGB decoded straight from the videos when --frames is "
                         "not given; for --dataset folder, the <Class>/<video> folder")
    frame_layout: str = _f("rawframes", "rawframes | rawframes_xy | feichtenhofer")
    val_ratio: float = _f(0.1, "share of the training list held out for validation (whole "
                               "groups: UCF101 gNN, HMDB51 source film); 0 = no validation")
    val_seed: int = _f(0, "seed of the validation hold-out: the split stays fixed while "
                          "--seed varies training (a sweep's seeds compare on one split)")
    folder_test_ratio: float = _f(0.3, "test share of a folder data set's generated split")
    workers: int = _f(2, "data-loader worker processes")
    batch_size: int = _f(32, "videos per training batch (global: split over torchrun processes)")
    eval_batch_size: int = _f(4, "videos per evaluation batch")
    decode: str = _f("auto", "where JPEG rawframes are decoded and augmented: cpu (loader "
                             "workers) | gpu (the batch, on the device, with nvJPEG) | auto "
                             "(gpu with CUDA and --frames)", choices=("auto", "cpu", "gpu"))


@dataclass
class OptimConfig:
    optimizer: str = _f("sgd", "sgd (momentum) | adamw", choices=("sgd", "adamw"))
    lr: float = _f(0.001, "base learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(5e-4, "weight decay (never on biases and BatchNorm)")
    epochs: int = _f(80, "training epochs")
    schedule: str = _f("step", "step (milestones) | cosine (with warmup) | plateau (on "
                               "validation loss)", choices=("step", "cosine", "plateau"))
    milestones: list = _f((30, 60), "epochs where `step` multiplies the lr by gamma", nargs="+",
                          type=int)
    gamma: float = _f(0.1, "lr factor of step and plateau")
    warmup_epochs: int = _f(0, "linear warmup epochs of cosine")
    clip_grad: float = _f(20.0, "gradient clipping by total norm (0 = off)")
    lr_mult_first_conv: float = _f(1.0, "lr multiplier of the first convolution (TSN uses 5 "
                                        "for the flow stream)")
    lr_mult_fc: float = _f(1.0, "lr multiplier of the classifier / LSTM head")
    accumulate: int = _f(1, "gradient accumulation: each batch of --batch-size runs as this "
                            "many micro-batches, one optimizer step (a batch larger than the "
                            "GPU holds)")


@dataclass
class RunConfig:
    run_dir: str = _f("runs/latest", "output folder: config.json, log.csv, checkpoints, "
                                     "curves.png, scores_<split>.npz")
    seed: int = _f(0, "seed of sampling, augmentation, shuffling and initialisation")
    device: str = _f("auto", "auto (this process's GPU when there is one, else cpu) | cpu | "
                             "cuda | cuda:N")
    amp: str = _f("auto", "auto (with CUDA: bf16 on GPUs with native bf16, compute capability "
                          ">= 8.0; fp16 with a gradient scaler before) | off | bf16 | fp16")
    channels_last: str = _f("auto", "auto (on with CUDA) | on | off")
    resume: bool = _f(False, "continue from run_dir/checkpoint_last.pt")
    checkpoint: str = _f("", "checkpoint to evaluate / predict with (default: the run's best, "
                             "else last)")
    max_snippets: int = _f(256, "evaluation: most snippets per forward pass (a video's "
                                "segments x crops are split into chunks of this size)")
    save_features: bool = _f(False, "evaluate: also write features_<split>.npz, the pooled "
                                    "backbone features of every test snippet (crops averaged)")
    feature_stride: int = _f(0, "evaluate --save-features: a snippet every this many frames "
                                "instead of the test segments (0: the test segments)")
    quiet: bool = _f(False, "no progress bars")
    compile: bool = _f(False, "torch.compile the network for the training steps (inductor; "
                              "the first steps are slow while it compiles; validation and the "
                              "saved weights use the plain module): results/train_speed has "
                              "the + compile rows")
    deterministic: bool = _f(False, "deterministic cuDNN algorithms instead of the fastest "
                                    "(cudnn.benchmark, on by default with CUDA); resume is "
                                    "bit-exact on CPU either way")
    tensorboard: str = _f("auto", "TensorBoard scalars in run_dir/tb/ (per epoch: loss, lr, "
                                  "top-1, samples/s, data-wait share; the loss every "
                                  "--log-every steps): auto (when tensorboard is installed) | "
                                  "on | off; log.csv is written either way",
                          choices=("auto", "on", "off"))
    log_every: int = _f(20, "optimizer steps between readings of the running loss (progress "
                            "bar, TensorBoard); 0: once per epoch")


CONCERNS = {"data": DataConfig, "clip": ClipConfig, "model": ModelConfig, "optim": OptimConfig,
            "run": RunConfig}

_CLIP_HELP = {
    "modality": "rgb (spatial stream) | flow (temporal stream)",
    "num_segments": "K segments sampled per video in training",
    "new_length": "snippet length L: 1 for RGB; flow stacks L fields (2L channels)",
    "input_size": "crop size fed to the network",
    "scale_size": "short side before test crops",
    "test_segments": "segments at test time (25: the TSN protocol)",
    "test_crops": "1 (centre) | 3 | 10 test crops",
    "average_views": "score (average the logits over crops) | prob (average the softmax, "
                     "MMAction2's average_clips=prob; the score file stores its log)",
    "flip": "random horizontal flip in training (flow x inverted)",
    "scales": "multi-scale crop scales of the short side",
}
_MODEL_HELP = {
    "num_classes": "set from the split's class list",
    "modality": "set from --modality", "new_length": "set from --new-length",
    "arch": "resnet18 | resnet34 | resnet50 | resnet101",
    "weights": "none | imagenet (torch hub cache; flow: cross-modality init) | PATH",
    "consensus": "mean | max | var (variance-weighted) | topk (mean of each class's "
                 "--topk-segments largest segment scores) | lstm (LSTM head over segments)",
    "topk_segments": "k of --consensus topk",
    "dropout": "dropout before the classifier",
    "partial_bn": "freeze every BatchNorm but the first (TSN; only with pretrained --weights)",
    "freeze_backbone": "train only the head on a frozen CNN",
    "lstm_hidden": "LSTM hidden size", "lstm_layers": "LSTM layers",
    "lstm_bidirectional": "bidirectional LSTM (the video reads the forward direction's last "
                          "step and the backward direction's first)",
    "lstm_loss": "last (last step) | all (every step, later steps weigh more)",
}
_DERIVED = {("model", "num_classes"), ("model", "modality"), ("model", "new_length")}


def _help(concern: str, f: dataclasses.Field) -> str:
    if "help" in f.metadata:
        return f.metadata["help"]
    return (_CLIP_HELP if concern == "clip" else _MODEL_HELP).get(f.name, f.name)


def add_config_args(parser: argparse.ArgumentParser, defaults: dict[str, dict] | None = None
                    ) -> None:
    """One flag per field of every concern (`--field-name`); `defaults` override per concern."""
    defaults = defaults or {}
    for concern, cls in CONCERNS.items():
        group = parser.add_argument_group(concern)
        inst = cls()
        for f in fields(cls):
            if (concern, f.name) in _DERIVED:
                continue
            default = defaults.get(concern, {}).get(f.name, getattr(inst, f.name))
            flag = "--" + f.name.replace("_", "-")
            kw = {"dest": f"{concern}.{f.name}", "default": default,
                  "help": _help(concern, f) + " (default: %(default)s)"}
            if isinstance(default, bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
                continue
            kw["metavar"] = f.name.upper()
            if isinstance(default, (tuple, list)):
                kw.update(nargs="+", type=f.metadata.get("type", type(default[0])))
            else:
                kw["type"] = type(default)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            group.add_argument(flag, **kw)


@dataclass(frozen=True)
class Config:
    """Everything a training or evaluation run is given, one dataclass per concern. Frozen:
    derive a changed copy with `replace` (nothing changes a caller's config in place)."""

    data: DataConfig
    clip: ClipConfig
    model: ModelConfig
    optim: OptimConfig
    run: RunConfig

    def replace(self, **concerns) -> Config:
        """A copy with whole concerns replaced: `cfg.replace(run=dataclasses.replace(...))`."""
        return dataclasses.replace(self, **concerns)

    def to_dict(self) -> dict[str, dict]:
        """{concern: {field: value}}: the JSON shape of config.json and checkpoints."""
        return {k: asdict(getattr(self, k)) for k in CONCERNS}

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> Config:
        """From `to_dict`'s shape (a config.json, a checkpoint's `config`; lists become tuples,
        missing fields take their defaults, other top-level keys such as `command` are
        ignored). An unknown field is a UserError naming `source`."""
        out = {}
        for concern, kind in CONCERNS.items():
            v = values.get(concern, {})
            if not isinstance(v, dict):
                raise UserError(f"{source}: section {concern!r} is not an object")
            names = {f.name for f in fields(kind)}
            unknown = sorted(set(v) - names)
            if unknown:
                raise UserError(f"{source}: unknown {concern} fields {unknown}")
            out[concern] = kind(**{k: tuple(x) if isinstance(x, list) else x
                                   for k, x in v.items()})
        return cls(**out)


def config_from_args(args: argparse.Namespace, num_classes: int | None = None) -> Config:
    """argparse namespace (flags of `add_config_args`) -> Config; the model's modality and
    snippet length follow the clip's."""
    values = vars(args)
    out = {}
    for concern, cls in CONCERNS.items():
        kw = {}
        for f in fields(cls):
            key = f"{concern}.{f.name}"
            if key in values:
                v = values[key]
                kw[f.name] = tuple(v) if isinstance(v, list) else v
        out[concern] = cls(**kw)
    clip = out["clip"]
    out["model"] = dataclasses.replace(out["model"], modality=clip.modality,
                                       new_length=clip.new_length,
                                       num_classes=num_classes or out["model"].num_classes)
    return Config(**out)


def merge_concerns(base: dict[str, dict], over: dict[str, dict]) -> dict[str, dict]:
    """Per-concern values of `over` laid over `base` (a new dict; neither is changed)."""
    out = {k: dict(v) for k, v in base.items()}
    for concern, values in over.items():
        out.setdefault(concern, {}).update(values)
    return out


def load_config_defaults(path: str | os.PathLike) -> dict[str, dict]:
    """A saved config.json as per-concern defaults for `add_config_args`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read config ({e})") from None
    unknown = set(data) - set(CONCERNS) - {"command", "classes", "weights_sha256"}
    if unknown:
        raise UserError(f"{path}: unknown config sections {sorted(unknown)}")
    return {k: v for k, v in data.items() if k in CONCERNS}


def config_to_json(cfg: Config, **extra) -> str:
    """config.json's text: the concerns, the command line that ran, and `extra` keys."""
    data = cfg.to_dict()
    data["command"] = " ".join([Path(sys.executable).name, "-m", *sys.argv])
    data.update(extra)
    return json.dumps(data, indent=2, default=list) + "\n"
