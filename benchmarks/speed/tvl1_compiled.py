"""Measurements of the compiled TV-L1 (flow_speed.py's `kernels`, `latency` and `compile`
sections): kernels per inner iteration, single-pair latency, compile time cold and warm."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from flow_tools import tvl1_step
from flow_tools.params import TVL1Params
from flow_tools.tvl1_torch import tvl1

# ops that only make views (no kernel, no pass over memory) in the eager profile
VIEW_OPS = {"aten::view", "aten::slice", "aten::select", "aten::unsqueeze", "aten::as_strided",
            "aten::expand", "aten::alias", "aten::unbind", "aten::permute", "aten::reshape",
            "aten::_reshape_alias", "aten::lift_fresh", "aten::detach", "aten::empty",
            "aten::empty_strided", "aten::resize_", "aten::result_type", "aten::to",
            "aten::_to_copy", "aten::lift", "aten::item", "aten::_local_scalar_dense",
            "aten::contiguous", "aten::is_nonzero"}


def _chunk_inputs(b: int, h: int, w: int, device: torch.device) -> tuple:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, 2, h, w, generator=g).to(device)
    dual = (0.1 * torch.randn(b, 2, 2, h, w, generator=g)).to(device)
    t = [torch.randn(b, h, w, generator=g).to(device) for _ in range(4)]
    terms = (*t, t[3].abs() + 1)
    eps, steps = torch.tensor(0.0, device=device), torch.tensor(1, device=device)
    return u, dual, torch.full((b,), float("inf"), device=device), terms, eps, steps


def eager_kernels_per_iteration(device: torch.device, p: TVL1Params | None = None) -> int:
    """Leaf aten ops that compute (views left out) in one eager inner iteration."""
    from torch.profiler import ProfilerActivity, profile
    p = p or TVL1Params()
    args = _chunk_inputs(2, 32, 40, device)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tvl1_step.inner_chunk(*args, n=1, **tvl1_step.step_constants(p))
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    leaves = [e for e in events if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    return sum(e.name not in VIEW_OPS for e in leaves)


def compiled_kernels_per_iteration(device: torch.device, p: TVL1Params | None = None
                                   ) -> tuple[int, float]:
    """Kernels inductor generates for one inner iteration, compiled as `tvl1` compiles (static
    frame size, symbolic batch: `tvl1_step.run_compiled`) but as a 1-iteration chunk and with
    the FX cache off, so it really generates them; and the compile seconds."""
    from torch._inductor import config as inductor_config
    from torch._inductor import metrics
    p = p or TVL1Params()
    consts = tvl1_step.step_constants(p)

    def one_iteration(*a):
        return tvl1_step.inner_chunk(*a, n=1, **consts)

    args = _chunk_inputs(2, 32, 40, device)
    metrics.reset()
    t = time.perf_counter()
    with inductor_config.patch(fx_graph_cache=False):
        tvl1_step.run_compiled(one_iteration, *args)
    return metrics.generated_kernel_count, time.perf_counter() - t


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def single_pair_latency(grey: np.ndarray, device: torch.device, repeats: int = 2) -> dict:
    """Seconds for one pair (what `live` computes per frame), eager and compiled (warm: the
    first compiled call, which compiles, is reported apart)."""
    a, b = torch.from_numpy(grey[:1]), torch.from_numpy(grey[1:2])
    row = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        t = time.perf_counter()
        tvl1(a, b, device=device, compiled=compiled)
        sync(device)
        first = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(repeats):
            tvl1(a, b, device=device, compiled=compiled)
        sync(device)
        row[f"{name}_s"] = round((time.perf_counter() - t) / repeats, 3)
        row[f"{name}_first_call_s"] = round(first, 2)
    row["speedup"] = round(row["eager_s"] / row["compiled_s"], 2)
    return row


_COMPILE_SCRIPT = """
import sys, time, torch
from flow_tools.tvl1_torch import tvl1
torch.set_num_threads({threads})
g = torch.Generator().manual_seed(0)
a = torch.randint(0, 255, ({batch}, {h}, {w}), dtype=torch.uint8, generator=g)
t = time.perf_counter()
tvl1(a, torch.roll(a, 1, dims=2), device="{device}", compiled=True)
print(time.perf_counter() - t)
"""


def compile_seconds(h: int, w: int, *, device: str = "cpu", threads: int = 2, batch: int = 2
                    ) -> dict:
    """Seconds of the first compiled `tvl1` call (compiling plus one run of the flow) in a
    fresh process with an empty inductor cache (cold), then in another fresh process with the
    cache the first one filled (warm)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        code = _COMPILE_SCRIPT.format(threads=threads, batch=batch, h=h, w=w, device=device)
        out = {}
        for kind in ("cold", "warm"):
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True, check=True)
            out[f"first_call_{kind}_cache_s"] = round(float(r.stdout.strip().splitlines()[-1]), 1)
    return out
