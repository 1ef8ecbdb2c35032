"""What memory layout and dtype the convolutions of a run really see."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def conv_layouts():
    """Yields a list that fills, for every k x k convolution called meanwhile, with (input is
    NHWC, weight is NHWC, output dtype): only where the two layouts differ (C, H, W > 1 and a
    kernel larger than 1 x 1)."""
    seen: list[tuple[bool, bool, torch.dtype]] = []

    def hook(module, inputs, output):
        x = inputs[0]
        if (isinstance(module, torch.nn.Conv2d) and x.dim() == 4 and min(x.shape[1:]) > 1
                and module.kernel_size != (1, 1)):
            cl = torch.channels_last
            seen.append((x.is_contiguous(memory_format=cl),
                         module.weight.is_contiguous(memory_format=cl), output.dtype))
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
