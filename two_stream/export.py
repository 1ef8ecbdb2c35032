"""Export a trained stream as one graph: ONNX, or a `torch.export` program (`pt2`).

    python -m two_stream.export --checkpoint RUN_OR_CKPT --format onnx|pt2 --out FILE [--verify]

The graph is the whole stream (backbone, then consensus or LSTM head) taking normalised
snippets float32 [N, K, C, H, W] (N dynamic) and returning video logits [N, classes]. A sidecar
FILE.json says how to build that input: `input_shape` (an example), `classes`, `modality`,
`new_length`, the normalisation `mean` / `std` per channel (of x / 255), and the extraction
parameters of the training frames (flow algorithm, size, bound). `pt2` (torch.export, the
successor of TorchScript) needs only torch; ONNX and `--verify` with onnxruntime need the
`export` extra (`pip install -e '.[export]'`). `--verify` runs the exported file and PyTorch on
the same input and prints `max_abs_diff=...`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from torch import nn

from .atomic import atomic_path, atomic_replace, atomic_write_text
from .engine.checkpoint import build_model_from_checkpoint, find_checkpoint, load_checkpoint
from .errors import EXIT_CODES_HELP, UserError, run_cli

log = logging.getLogger("two_stream.export")
EXTRA = "pip install -e '.[export]' (onnx, onnxscript, onnxruntime)"


class StreamGraph(nn.Module):
    """A TSN stream as one function: normalised snippets [N, K, C, H, W] -> logits [N, C]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, snippets: torch.Tensor) -> torch.Tensor:
        return self.model.forward_segments(snippets)[0]


def sidecar(ck: dict, shape: list[int]) -> dict:
    model = ck["config"]["model"]
    c = 3 if model["modality"] == "rgb" else 2 * model["new_length"]
    from .data.transforms import channel_stats
    mean, std = channel_stats(model["modality"], c)
    return {"input_shape": shape, "input": "float32 (x / 255 - mean) / std per channel, "
            "[N, K, C, H, W]: N videos (dynamic), K segments", "output": "logits [N, classes]",
            "classes": list(ck["classes"]), "modality": model["modality"],
            "new_length": model["new_length"], "consensus": model["consensus"],
            "mean": mean.flatten().tolist(), "std": std.flatten().tolist(),
            "extraction": (ck.get("input") or {}).get("extraction"),
            "bound": (ck.get("input") or {}).get("bound")}


def _need_export_extra():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError(f"ONNX export needs the `export` extra: {EXTRA}") from None


def export(ck_path: Path, fmt: str, out: Path, segments: int | None = None) -> tuple:
    """Write the graph to `out` (atomically) and its sidecar; returns (graph, example)."""
    ck = load_checkpoint(ck_path)
    graph = StreamGraph(build_model_from_checkpoint(ck)).eval()
    clip = ck["config"]["clip"]
    k = segments or clip["num_segments"]
    c = graph.model.cfg.in_chans
    s = clip["input_size"]
    example = torch.randn(2, k, c, s, s)
    n = torch.export.Dim("n", min=1, max=4096)
    tmp = atomic_path(out)
    if fmt == "onnx":
        _need_export_extra()
        tmp = tmp.with_name(tmp.name + ".onnx")  # the exporter keys on the extension
        torch.onnx.export(graph, (example,), str(tmp), dynamo=True,
                          dynamic_shapes={"snippets": {0: n}}, input_names=["snippets"],
                          output_names=["logits"], verbose=False)
    else:
        program = torch.export.export(graph, (example,), dynamic_shapes={"snippets": {0: n}})
        tmp = tmp.with_name(tmp.name + ".pt2")
        torch.export.save(program, str(tmp))
    atomic_replace(tmp, out)
    atomic_write_text(out.with_suffix(".json"),
                      json.dumps(sidecar(ck, [1, k, c, s, s]), indent=1) + "\n")
    return graph, example


@torch.no_grad()
def verify(graph: nn.Module, fmt: str, out: Path, example: torch.Tensor) -> float:
    """max |exported - PyTorch| on a batch of another size than the export example."""
    x = torch.randn(3, *example.shape[1:])
    want = graph(x).numpy()
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(f"--verify of ONNX needs onnxruntime: {EXTRA}") from None
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    else:
        got = torch.export.load(str(out)).module()(x).numpy()
    return float(abs(got - want).max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m two_stream.export",
                                description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP)
    p.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint")
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    p.add_argument("--out", required=True, help="the exported file (sidecar: same name, .json)")
    p.add_argument("--segments", type=int, help="K of the graph (default: the training "
                                                "segments of the checkpoint)")
    p.add_argument("--verify", action="store_true",
                   help="run the exported file and PyTorch on one input, print max_abs_diff")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def body() -> None:
        out = Path(args.out)
        graph, example = export(find_checkpoint(args.checkpoint), args.format, out,
                                args.segments)
        print(f"{out} and {out.with_suffix('.json')}: input {list(example.shape[1:])} per "
              "video, dynamic batch")
        if args.verify:
            print(f"max_abs_diff={verify(graph, args.format, out, example):.3g}")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
