"""torchvision ResNets as snippet encoders, with TSN's cross-modality first convolution.

`--weights none|imagenet|PATH`: `imagenet` goes through torchvision's weight enums and reads
the file from the torch hub cache (no download is attempted when it is missing: the error names
the file and the folder to put it in); PATH loads a local state dict.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn

from ..errors import UserError

ARCHS = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V1),
}


class WeightsError(UserError):
    """Weights that cannot be found or do not fit the model."""


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """TSN cross-modality initialisation: [O, 3, k, k] RGB filters -> [O, in_chans, k, k],
    every input channel the mean of the RGB filters (no rescaling, as in TSN)."""
    if weight.shape[1] == in_chans:
        return weight
    return weight.mean(dim=1, keepdim=True).repeat(1, in_chans, 1, 1).contiguous()


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights of `arch` from the torch hub cache, without network access."""
    enum = ARCHS[arch][1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    if not path.exists():
        raise WeightsError(
            f"ImageNet weights for {arch} not found at {path}; download {enum.url} where "
            f"there is internet and copy it to {path.parent}/, or pass --weights PATH")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a file: a plain one, a `{'state_dict' | 'model': ...}` checkpoint,
    keys with a DataParallel `module.` prefix, or one of our TSN checkpoints (its backbone is
    taken, e.g. to train an LSTM head on a CNN trained with mean consensus)."""
    if not Path(path).is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file; report them all alike
        raise WeightsError(f"{path}: cannot load as a PyTorch state dict ({e})") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(sd).__name__}")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if any(k.startswith("backbone.") for k in sd):  # a TSN checkpoint (ours, MMAction2's)
        sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    if any(k.endswith(".conv.weight") for k in sd):  # MMAction2's ConvModule names
        sd = mmaction_to_torchvision(sd)
    return sd


_MM_KEY = re.compile(r"^(?P<pre>(?:layer\d+\.\d+\.)?)(?P<mod>conv\d|downsample)"
                     r"\.(?P<part>conv|bn)\.(?P<rest>.+)$")


def mmaction_to_torchvision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MMAction2's ResNet keys (a ConvModule per conv: `conv1.conv.weight`, `conv1.bn.*`,
    `layer1.0.conv2.conv.weight`, `layer1.0.downsample.conv.weight`, ...) -> torchvision's
    (`conv1.weight`, `bn1.*`, `layer1.0.conv2.weight`, `layer1.0.bn2.*`,
    `layer1.0.downsample.0.weight`, `downsample.1.*`), so Kinetics-pretrained TSN weights can
    start a run. Keys outside the backbone (its `cls_head`) are dropped by the caller."""
    out = {}
    for k, v in sd.items():
        m = _MM_KEY.match(k)
        if m is None:
            out[k] = v
            continue
        pre, mod, part, rest = m["pre"], m["mod"], m["part"], m["rest"]
        if mod == "downsample":
            out[f"{pre}downsample.{0 if part == 'conv' else 1}.{rest}"] = v
        elif part == "conv":
            out[f"{pre}{mod}.{rest}"] = v
        else:
            out[f"{pre}bn{mod[len('conv'):]}.{rest}"] = v
    return out


def build_backbone(arch: str, weights: str = "none", in_chans: int = 3
                   ) -> tuple[nn.Module, int]:
    """A ResNet without its classifier (output [N, D] features) and D.

    For in_chans != 3, conv1 takes in_chans channels; ImageNet weights are adapted with
    `adapt_input_conv`. A PATH state dict must already have in_chans input channels.
    """
    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r}; choose from {sorted(ARCHS)}")
    net = ARCHS[arch][0](weights=None)
    if in_chans != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride,
                              old.padding, bias=False)
    if weights not in ("none", "", None):
        if weights == "imagenet":
            sd = imagenet_state_dict(arch)
            sd["conv1.weight"] = adapt_input_conv(sd["conv1.weight"], in_chans)
        else:
            sd = load_state_dict_file(weights)
            w = sd.get("conv1.weight")
            if w is not None and w.shape[1] != in_chans:
                raise WeightsError(
                    f"{weights}: conv1 has {w.shape[1]} input channels but this stream needs "
                    f"{in_chans} (flow: 2 x snippet length); for RGB ImageNet weights use "
                    "--weights imagenet, which adapts them to flow (cross-modality init)")
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsError(f"{weights}: weights do not fit {arch}: missing "
                               f"{missing[:3]}, unexpected {unexpected[:3]}")
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim
