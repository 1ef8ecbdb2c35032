"""TV-L1 optical flow in PyTorch, batched over frame pairs, on any device.

The algorithm of Zach, Pock and Bischof as described by Sanchez, Meinhardt-Llopis and Facciolo
("TV-L1 Optical Flow Estimation", IPOL 2013), with the choices of opencv-contrib's
`DualTVL1OpticalFlow`, so the same `TVL1Params` mean the same thing in both backends:

- pyramid: level s+1 is level s resized by `scale_step` (bilinear, OpenCV's pixel-centre
  mapping and rounded sizes), stopping before a level narrower than 16 px; the flow starts at
  zero on the coarsest level and is resized (bilinear) and divided by `scale_step` going up;
- per level, `warps` times: I1 and its centred gradients are warped by the current flow with
  bicubic interpolation (positions rounded to 1/32 px and zeros outside, as `cv::remap` does);
  then up to `outer_iterations` x `inner_iterations` steps of the thresholding step (v), the
  primal update (u, whose squared change summed over the image is the stopping measure) and the
  dual projection (p), stopping when that measure falls below `epsilon^2 x area`; a median
  filter (`median_filtering` px, replicated borders) smooths u at the start of each outer
  iteration; `gamma` > 0 adds the illumination term u3.

The stopping rule is decided per pair: a pair that has converged keeps its state while the rest
of the batch iterates, so a batch gives each pair the result it gets alone.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import tvl1_step
from .errors import UserError
from .params import FLOW_COMPILE_MODES, TVL1Params
from .tvl1_median import median_blur_cpu, median_filter, pad_replicate
from .tvl1_step import divergence, forward_gradient, resolve_flow_compile

__all__ = ["FLOW_COMPILE_MODES", "divergence", "forward_gradient", "median_filter",
           "peak_bytes_per_pair", "resolve_flow_compile", "tvl1"]

MIN_LEVEL_SIZE = 16  # OpenCV drops pyramid levels narrower or shorter than this
REMAP_SUBPIXELS = 32  # cv::remap rounds positions to 1/32 px (INTER_TAB_SIZE)
CHECK_EVERY = 8  # iterations between host syncs that only decide whether to stop early
COMPILED_CHUNK = 2  # iterations unrolled in one compiled call (compile time grows with it)


def _linear_taps(in_size: int, out_size: int, src_per_dst: float, device) -> tuple:
    """Indices and weights of OpenCV's bilinear resize along one axis (pixel centres map as
    `src = (dst + 0.5) * src_per_dst - 0.5`; taps clamp at the borders)."""
    s = (torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * src_per_dst - 0.5
    i0 = torch.floor(s)
    f = s - i0
    f = torch.where(i0 < 0, torch.zeros_like(f), f)
    i0 = i0.clamp(min=0)
    last = i0 >= in_size - 1
    f = torch.where(last, torch.zeros_like(f), f)
    i0 = i0.clamp(max=in_size - 1).long()
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, f.float()


def resize_linear(x: torch.Tensor, size: tuple[int, int], src_per_dst: tuple[float, float]
                  ) -> torch.Tensor:
    """[..., H, W] -> [..., h, w] bilinear, as `cv::resize(INTER_LINEAR)` maps float images."""
    h, w = size
    y0, y1, fy = _linear_taps(x.shape[-2], h, src_per_dst[0], x.device)
    x0, x1, fx = _linear_taps(x.shape[-1], w, src_per_dst[1], x.device)
    rows = x.index_select(-2, y0) * (1 - fy)[:, None] + x.index_select(-2, y1) * fy[:, None]
    return rows.index_select(-1, x0) * (1 - fx) + rows.index_select(-1, x1) * fx


def pyramid_sizes(h: int, w: int, params: TVL1Params) -> list[tuple[int, int]]:
    """(H, W) of each level, finest first, as OpenCV builds them."""
    sizes = [(h, w)]
    for _ in range(1, params.nscales):
        ph, pw = sizes[-1]
        nh, nw = round(ph * params.scale_step), round(pw * params.scale_step)
        if nh < MIN_LEVEL_SIZE or nw < MIN_LEVEL_SIZE:
            break
        sizes.append((nh, nw))
    return sizes


def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, H, W] -> (dx, dy): half central differences, half one-sided ones at the borders."""
    p = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    return (0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]),
            0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]))


def warp_bicubic(imgs: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample [B, N, H, W] images at x + u, y + v (flow [B, 2, H, W]) with bicubic
    interpolation, positions rounded to 1/32 px and zero outside, like `cv::remap`."""
    b, _, h, w = imgs.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=imgs.device, dtype=imgs.dtype),
                            torch.arange(w, device=imgs.device, dtype=imgs.dtype), indexing="ij")
    mx = torch.round((xs + flow[:, 0]) * REMAP_SUBPIXELS) / REMAP_SUBPIXELS
    my = torch.round((ys + flow[:, 1]) * REMAP_SUBPIXELS) / REMAP_SUBPIXELS
    grid = torch.stack([mx * (2.0 / max(w - 1, 1)) - 1, my * (2.0 / max(h - 1, 1)) - 1], dim=-1)
    return F.grid_sample(imgs, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def _call(fn, compiled: bool, *args, **static):
    """fn(*args, **static), through its compiled form when asked and the compiler works; a
    compiler that fails is reported once and the eager function answers instead."""
    if compiled and not tvl1_step._broken:
        try:
            return tvl1_step.run_compiled(fn, *args, **static)
        except tvl1_step.compile_errors() as err:
            tvl1_step.compile_failed(err)
    return fn(*args, **static)


def _median(u: torch.Tensor, run: torch.Tensor, k: int, compiled: bool) -> torch.Tensor:
    """The median step: eager, the selection network (the reference); fast, OpenCV's own
    median on a CPU (17x what inductor makes of the network there), else the network compiled
    from padded input. All three give the same values (tests/flow_tools/test_tvl1_median.py)."""
    if not compiled:
        return tvl1_step.median_step(u, run, k=k)
    if u.device.type == "cpu":
        return median_blur_cpu(u, run, k)
    return _call(tvl1_step.median_step_padded, compiled, u, pad_replicate(u[:, :2], k), run, k=k)


class _Running:
    """The pairs of a batch still iterating on one warp, and their state: a pair that has
    converged leaves (its flow and dual field are kept aside), so the iterations compute only
    for the others. Converged pairs would be frozen by the stopping mask anyway: leaving
    changes no result, and saves the work a batch spent on them (56 % of the inner iterations
    of 16 real 340x256 pairs: the batch ran until its slowest pair stopped)."""

    def __init__(self, u, dual, error, terms):
        self.u, self.dual, self.error, self.terms = u, dual, error, terms
        self.idx: torch.Tensor | None = None  # batch positions of the running pairs (None: all)
        self.full: tuple | None = None  # (u, dual) of the whole batch, once pairs have left

    def shrink(self, eps: torch.Tensor) -> bool:
        """Let the converged pairs leave; False when none is running (one host sync, the one
        the stopping rule needs anyway). Never below two pairs: a compiled graph specialises a
        batch of one, and would compile again; the second pair stays frozen by the mask."""
        keep = self.error > eps
        n = int(keep.sum())
        if n == 0 or n == len(keep) or (n == 1 and len(keep) == 2):
            return n > 0
        if n == 1:
            keep[int(torch.nonzero(~keep)[0])] = True
        if self.full is None:
            self.full, self.idx = (self.u, self.dual), torch.arange(len(keep), device=keep.device)
        else:
            gone = self.idx[~keep]
            self.full[0].index_copy_(0, gone, self.u[~keep])
            self.full[1].index_copy_(0, gone, self.dual[~keep])
        self.idx = self.idx[keep]
        self.u, self.dual, self.error = self.u[keep], self.dual[keep], self.error[keep]
        self.terms = tuple(t[keep] for t in self.terms)
        return True

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, dual) of the whole batch."""
        if self.full is None:
            return self.u, self.dual
        u, dual = self.full
        u.index_copy_(0, self.idx, self.u)
        dual.index_copy_(0, self.idx, self.dual)
        return u, dual


def _one_scale(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, p: TVL1Params,
               compiled: bool = False) -> torch.Tensor:
    """Refine the flow u [B, C, H, W] (C = 2, or 3 with the illumination term) on one level."""
    b, c, h, w = u.shape
    dev = u.device
    eps = torch.tensor(p.epsilon * p.epsilon * h * w, device=dev, dtype=u.dtype)
    consts = tvl1_step.step_constants(p)
    # compiled: always COMPILED_CHUNK iterations per call (one graph), a surplus masked by
    # `steps`; eager: exactly the iterations left
    steps = torch.tensor(CHECK_EVERY, device=dev)  # eager: never masks
    steps_left = [torch.tensor(k, device=dev) for k in range(COMPILED_CHUNK + 1)]
    i1x, i1y = centered_gradient(i1)
    dual = torch.zeros(b, c, 2, h, w, device=dev, dtype=u.dtype)
    for _ in range(p.warps):
        warped = warp_bicubic(torch.stack([i1, i1x, i1y], dim=1), u[:, :2])
        # contiguous: a compacted batch (`_Running.shrink`) is, and a compiled graph guards
        # on strides (views of `warped` would make it compile again)
        i1w, i1wx, i1wy = (t.contiguous() for t in warped.unbind(1))
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u[:, 0] - i1wy * u[:, 1] - i0
        safe_grad = torch.where(grad > torch.finfo(u.dtype).eps, grad, torch.ones_like(grad))
        terms = (rho_c, i1wx, i1wy, grad, safe_grad)
        del warped, i1w
        live = _Running(u, dual, torch.full((b,), math.inf, device=dev, dtype=u.dtype), terms)
        del terms, u, dual  # the state lives in `live` now: no second copy held
        for _ in range(p.outer_iterations):
            if not live.shrink(eps):
                break
            if p.median_filtering > 1:
                live.u = _median(live.u, live.error > eps, p.median_filtering, compiled)
            for done in range(0, p.inner_iterations, CHECK_EVERY):
                if done and not live.shrink(eps):
                    break
                left = min(CHECK_EVERY, p.inner_iterations - done)
                if not compiled:
                    live.u, live.dual, live.error = tvl1_step.inner_chunk(
                        live.u, live.dual, live.error, live.terms, eps, steps, n=left, **consts)
                    continue
                for k in range(0, left, COMPILED_CHUNK):
                    live.u, live.dual, live.error = _call(
                        tvl1_step.inner_chunk, compiled, live.u, live.dual, live.error,
                        live.terms, eps, steps_left[min(left - k, COMPILED_CHUNK)],
                        n=COMPILED_CHUNK, **consts)
        u, dual = live.merged()
    return u


# float32 arrays of the finest level's size alive at the peak, per pair (the eager median: the
# level's state, ~14 arrays, plus <= 16 two-channel selection temporaries; the compiled path
# needs fewer): counted, and checked against the tensors a dispatch mode sees alive
# (tests/flow_tools/test_tvl1_memory.py)
PEAK_ARRAYS = {2: 54, 3: 68}


def peak_bytes_per_pair(height: int, width: int, params: TVL1Params | None = None) -> int:
    """Upper bound of the memory `tvl1` needs per pair at height x width (eager or compiled;
    a batch of B pairs needs B times this): the two uint8 frames, their float pyramids
    (2 x sum of the level areas) and PEAK_ARRAYS[C] float32 arrays of the finest level, C = 2
    flow channels (3 with the illumination term, gamma > 0):

        bytes = 2 H W + 4 (2 sum_s H_s W_s + PEAK_ARRAYS[C] H W)

    about 238 bytes per pixel with OpenCV's defaults (5 levels, scale step 0.8): 20.7 MB for
    a 340x256 pair, 493 MB at 1920x1080."""
    params = params or TVL1Params()
    levels = sum(h * w for h, w in pyramid_sizes(height, width, params))
    c = 3 if params.gamma != 0 else 2
    return 2 * height * width + 4 * (2 * levels + PEAK_ARRAYS[c] * height * width)


def _as_grey_float(x: torch.Tensor | np.ndarray, device) -> torch.Tensor:
    t = torch.as_tensor(x).to(device)
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise UserError(f"tvl1 expects grey frames [B, H, W], got shape {tuple(t.shape)}")
    # OpenCV works on 0..255 floats: uint8 as is, float images in [0, 1] scaled up
    return t.float() if t.dtype == torch.uint8 else t.float() * 255.0


def tvl1(prev: torch.Tensor, next: torch.Tensor, params: TVL1Params | None = None,
         device: str | torch.device | None = None, *, compiled: bool = False) -> torch.Tensor:
    """TV-L1 flow from grey frames `prev` to `next` [B, H, W] (uint8, or float in [0, 1]):
    float32 [B, H, W, 2] (x, y displacement in px), computed on `device` (default: the
    inputs'), every pair with its own stopping rule. `compiled`: the inner iterations and the
    median through torch.compile (the same maths fused into a few kernels; falls back to the
    eager reference, with one logged line, where compiling fails)."""
    device = torch.device(device) if device is not None else torch.as_tensor(prev).device
    i0, i1 = _as_grey_float(prev, device), _as_grey_float(next, device)
    if i0.shape != i1.shape:
        raise UserError(f"tvl1: frame shapes differ: {tuple(i0.shape)} vs {tuple(i1.shape)}")
    b, h, w = i0.shape
    if h < 3 or w < 3:
        raise UserError(f"tvl1: frames of {w}x{h} px are too small (need at least 3x3)")
    params = params or TVL1Params()
    if params.median_filtering not in (0, 1, 3, 5):
        raise UserError(f"tvl1: median_filtering must be 0, 1, 3 or 5 (OpenCV's float median "
                        f"sizes), got {params.median_filtering}")
    sizes = pyramid_sizes(h, w, params)
    levels0, levels1 = [i0], [i1]
    for s in range(1, len(sizes)):
        step = 1.0 / params.scale_step
        levels0.append(resize_linear(levels0[-1], sizes[s], (step, step)))
        levels1.append(resize_linear(levels1[-1], sizes[s], (step, step)))
    c = 3 if params.gamma != 0 else 2
    u = torch.zeros(b, c, *sizes[-1], device=device)
    with torch.no_grad():
        for s in range(len(sizes) - 1, -1, -1):
            u = _one_scale(levels0[s], levels1[s], u, params, compiled)
            if s == 0:
                break
            (ch, cw), (fh, fw) = sizes[s], sizes[s - 1]
            u = resize_linear(u, (fh, fw), (ch / fh, cw / fw))
            u = torch.cat([u[:, :2] / params.scale_step, u[:, 2:]], dim=1)  # u3 is not scaled
    return u[:, :2].permute(0, 2, 3, 1).contiguous()
