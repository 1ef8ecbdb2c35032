"""Export: every head (mean, max, var consensus, LSTM) as ONNX and as torch.export agrees
with PyTorch on a batch of another size than the example (dynamic N), with its sidecar."""
import json

import pytest
import torch

from two_stream import export
from two_stream.engine.checkpoint import save_checkpoint
from two_stream.models.tsn import TSN, ModelConfig


def _checkpoint(path, consensus, modality="flow"):
    cfg = ModelConfig(num_classes=4, arch="resnet18", consensus=consensus, modality=modality,
                      new_length=2 if modality == "flow" else 1, lstm_hidden=16)
    torch.manual_seed(0)
    model = TSN(cfg)
    clip = {"modality": modality, "new_length": cfg.new_length, "num_segments": 3,
            "input_size": 32, "scale_size": 36, "test_segments": 3, "test_crops": 1}
    from dataclasses import asdict
    save_checkpoint(path, {"model": model.state_dict(), "config": {"model": asdict(cfg),
                                                                   "clip": clip},
                           "classes": ["a", "b", "c", "d"], "epoch": 1,
                           "input": {"extraction": {"flow": {"algorithm": "dis",
                                                             "preset": "medium"}},
                                     "bound": 20.0}})
    return path


@pytest.mark.parametrize("fmt,consensus", [("onnx", "mean"), ("onnx", "max"), ("onnx", "var"),
                                           ("onnx", "lstm"), ("pt2", "mean"), ("pt2", "lstm")])
def test_export_agrees_with_pytorch(tmp_path, fmt, consensus, capsys):
    ck = _checkpoint(tmp_path / "ck.pt", consensus)
    out = tmp_path / f"stream.{fmt}"
    assert export.main(["--checkpoint", str(ck), "--format", fmt, "--out", str(out),
                        "--verify"]) == 0
    diff = float(capsys.readouterr().out.split("max_abs_diff=")[1])
    assert diff < 1e-4
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["input_shape"] == [1, 3, 4, 32, 32] and side["classes"] == ["a", "b", "c", "d"]
    assert side["modality"] == "flow" and side["new_length"] == 2 and len(side["mean"]) == 4
    assert side["extraction"]["flow"]["algorithm"] == "dis"


def test_missing_extra_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import builtins
    real = builtins.__import__

    def no_onnx(name, *a, **k):
        if name.startswith("onnx"):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    ck = _checkpoint(tmp_path / "ck.pt", "mean")
    assert export.main(["--checkpoint", str(ck), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "needs the `export` extra: pip install -e '.[export]'" in capsys.readouterr().err
