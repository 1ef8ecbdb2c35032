"""The inner TV-L1 iterations as pure tensor functions, run eagerly or through torch.compile.

`inner_chunk` is `n` iterations of the thresholding step, the primal update, the per-pair error
and the dual projection; `median_step` the median filter that opens each outer iteration. Both
keep the per-pair stopping rule on the device (a pair whose error fell below `eps` keeps its
state), so the host only looks at the error between chunks. Eager, each iteration is ~40 small
kernels, each a full pass over the arrays; compiled by inductor (vectorised C++ on a CPU, Triton
on CUDA) a chunk becomes a few fused kernels per iteration, and the median one kernel.

Compiling: one graph per (function, pyramid level size, flow channels, parameters, device),
the batch dimension symbolic, so a short last batch reuses them (a batch of one pair is its own
graph: dynamo specialises sizes of 1). Scalars that change per level (`eps`, the iteration
budget) are 0-d tensors so they do not become constants of the graph.
"""
from __future__ import annotations

import logging
import shutil

import torch
import torch.nn.functional as F

from .errors import UserError
from .params import FLOW_COMPILE_MODES, TVL1Params
from .tvl1_median import median_filter, median_of_padded

log = logging.getLogger(__name__)


def step_constants(p: TVL1Params) -> dict[str, float]:
    """The keyword constants of `inner_chunk` for parameters p."""
    return {"l_t": p.lambda_ * p.theta, "taut": p.tau / p.theta, "theta": p.theta,
            "gamma": p.gamma}


def forward_gradient(u: torch.Tensor) -> torch.Tensor:
    """[..., H, W] -> [..., 2, H, W] forward differences (x, y), zero on the last column / row."""
    dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return torch.stack([dx, dy], dim=-3)


def divergence(p: torch.Tensor) -> torch.Tensor:
    """[..., 2, H, W] -> [..., H, W]: backward differences, the adjoint of `forward_gradient`
    in the form OpenCV uses (the first column / row take the value itself)."""
    px, py = p[..., 0, :, :], p[..., 1, :, :]
    return (px - F.pad(px[..., :, :-1], (1, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per-pair select: mask [B] bool chooses `new` for the pairs still running."""
    return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)


def inner_chunk(u: torch.Tensor, dual: torch.Tensor, error: torch.Tensor, warped: tuple,
                eps: torch.Tensor, steps: torch.Tensor, *, n: int, l_t: float, taut: float,
                theta: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` inner iterations, the k-th of them only where `k < steps` and the pair's error > eps.

    u [B, C, H, W] (C = 2, or 3 with the illumination term), dual [B, C, 2, H, W], error [B];
    warped = (rho_c, i1wx, i1wy, grad, safe_grad), each [B, H, W], from the current warp."""
    rho_c, i1wx, i1wy, grad, safe_grad = warped
    tiny = torch.finfo(u.dtype).eps
    c = u.shape[1]
    for k in range(n):
        run = (error > eps) & (k < steps)
        rho = rho_c + i1wx * u[:, 0] + i1wy * u[:, 1]
        if c == 3:
            rho = rho + gamma * u[:, 2]
        fi = torch.where(rho < -l_t * grad, l_t,
                         torch.where(rho > l_t * grad, -l_t,
                                     torch.where(grad > tiny, -rho / safe_grad, 0.0)))
        g = [i1wx, i1wy] + ([torch.full_like(i1wx, gamma)] if c == 3 else [])
        v = u + fi[:, None] * torch.stack(g, dim=1)
        new_u = v + theta * divergence(dual)
        new_error = (new_u - u).square().sum(dim=(1, 2, 3))
        du = forward_gradient(new_u)  # [B, C, 2, H, W]
        norm = 1.0 + taut * torch.sqrt(du[:, :, 0] ** 2 + du[:, :, 1] ** 2)
        new_dual = (dual + taut * du) / norm[:, :, None]
        u = _where(run, new_u, u)
        dual = _where(run, new_dual, dual)
        error = torch.where(run, new_error, error)
    return u, dual, error


def median_step(u: torch.Tensor, run: torch.Tensor, *, k: int) -> torch.Tensor:
    """The k x k median of the flow channels of u [B, C, H, W] for the pairs still running."""
    return torch.cat([_where(run, median_filter(u[:, :2], k), u[:, :2]), u[:, 2:]], dim=1)


def median_step_padded(u: torch.Tensor, padded: torch.Tensor, run: torch.Tensor, *, k: int
                       ) -> torch.Tensor:
    """`median_step` with the flow channels already padded (`tvl1_median.pad_replicate`)
    outside the graph: what is compiled, since replicate padding inside it does not
    vectorise."""
    return torch.cat([_where(run, median_of_padded(padded, k), u[:, :2]), u[:, 2:]], dim=1)


_compiled: dict = {}
_broken: list[str] = []  # why compiling failed in this process (then everything runs eager)


def run_compiled(fn, *args, **static):
    """fn(*args, **static) through inductor: static frame sizes (symbolic ones cost a CPU ~10x
    per iteration in inductor's C++: 198 vs 17 ms for 2 iterations of 4 pairs at 340x256), so
    one graph per pyramid level of a frame size, compiled once; the batch dimension symbolic,
    so a short last batch reuses them (a batch of 1 is specialised by dynamo: one more graph).
    The recompile limit is raised for the levels and frame sizes one process sees."""
    import torch._dynamo as dynamo
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, fullgraph=True)
    for t in _tensors(args):
        if t.dim() and t.shape[0] > 1:
            dynamo.mark_dynamic(t, 0)
    with dynamo.config.patch(automatic_dynamic_shapes=False, recompile_limit=64):
        return _compiled[fn](*args, **static)


def _tensors(args) -> list[torch.Tensor]:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, tuple):
            out.extend(_tensors(a))
    return out


def compile_failed(err: BaseException) -> None:
    """Note (once, in one line) that compiling failed; `tvl1` then runs eager."""
    if not _broken:
        log.warning("TV-L1: torch.compile failed (%s: %s); running the eager code instead",
                    type(err).__name__, str(err).strip().splitlines()[0][:200] if str(err) else "")
    _broken.append(type(err).__name__)


def compile_errors() -> tuple[type, ...]:
    """The exceptions that mean 'this machine cannot compile' rather than a bug of ours."""
    import torch._dynamo.exc as dexc
    import torch._inductor.exc as iexc
    return (dexc.BackendCompilerFailed, iexc.InductorError, dexc.TritonUnavailableError,
            iexc.CppCompileError)


def compiler_available(device: torch.device) -> str | None:
    """None when inductor can compile for `device`, else the reason (a cheap check: a C++
    compiler on the PATH for a CPU, an importable Triton for CUDA; a failure of the real compile
    is caught later by `tvl1`)."""
    if _broken:
        return f"an earlier compile failed ({_broken[0]})"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "no C++ compiler (g++, c++ or clang++) on the PATH"
    return None


def resolve_flow_compile(mode: str, device, *, interactive: bool) -> bool:
    """Whether to compile the TV-L1 iterations: `on` always, `off` never, `auto` for extraction
    on any device (compiling pays back over many pairs) and for interactive use (live, predict)
    only on CUDA, where the first frame is not held up by a long CPU compile. Without a working
    compiler, one logged line and False."""
    if mode not in FLOW_COMPILE_MODES:
        raise UserError(f"--flow-compile {mode!r}: choose from {', '.join(FLOW_COMPILE_MODES)}")
    device = torch.device(device)
    want = mode == "on" or (mode == "auto" and (not interactive or device.type == "cuda"))
    if not want:
        return False
    reason = compiler_available(device)
    if reason is not None:
        log.warning("TV-L1: not compiling (--flow-compile %s): %s; running the eager code",
                    mode, reason)
        return False
    return True
