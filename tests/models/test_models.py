import pytest
import torch

from flow_tools.errors import UserError
from two_stream.models.backbones import (
    WeightsError,
    adapt_input_conv,
    build_backbone,
    imagenet_state_dict,
)
from two_stream.models.heads import lstm_loss, step_weights
from two_stream.models.tsn import TSN, ModelConfig

SMALL = dict(num_classes=5, arch="resnet18")


@pytest.mark.parametrize("modality,length", [("rgb", 1), ("flow", 5)])
@pytest.mark.parametrize("consensus", ["mean", "max", "var", "topk", "lstm"])
def test_shapes_and_every_parameter_gets_a_gradient(modality, length, consensus):
    torch.manual_seed(0)
    cfg = ModelConfig(modality=modality, new_length=length, consensus=consensus,
                      lstm_hidden=32, **SMALL)
    model = TSN(cfg).train()
    x = torch.randn(2, 3, cfg.in_chans, 64, 64)
    video, seg = model.forward_segments(x)
    assert video.shape == (2, 5) and seg.shape == (2, 3, 5)
    loss, _ = model.loss(x, torch.tensor([1, 4]))
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.trainable_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_partial_bn_freezes_all_but_the_first_bn(tmp_path):
    rgb, _ = build_backbone("resnet18", "none", 3)
    torch.save(rgb.state_dict(), tmp_path / "w.pt")
    model = TSN(ModelConfig(partial_bn=True, weights=str(tmp_path / "w.pt"), **SMALL)).train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns[0].training and all(not m.training for m in bns[1:])
    assert bns[0].weight.requires_grad and not bns[1].weight.requires_grad
    before = bns[1].running_mean.clone()
    model(torch.randn(2, 3, 3, 64, 64) * 5)
    assert torch.equal(bns[1].running_mean, before)
    for full in (TSN(ModelConfig(partial_bn=False, weights=str(tmp_path / "w.pt"), **SMALL)),
                 TSN(ModelConfig(partial_bn=True, weights="none", **SMALL))):  # from scratch
        full.train()
        assert all(m.training for m in full.backbone.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))


def test_frozen_backbone_keeps_no_activations():
    model = TSN(ModelConfig(consensus="lstm", freeze_backbone=True, lstm_hidden=16, **SMALL))
    feats = model.features(torch.randn(2, 3, 64, 64))
    assert not feats.requires_grad
    names = [n for n, _ in model.trainable_parameters()]
    assert names and all(n.startswith("head.") for n in names)


def test_cross_modality_init_is_the_mean_of_rgb_filters(tmp_path):
    w = torch.randn(8, 3, 7, 7)
    a = adapt_input_conv(w, 10)
    assert a.shape == (8, 10, 7, 7)
    for c in range(10):
        assert torch.allclose(a[:, c], w.mean(dim=1))
    # through the model: a local RGB ImageNet-style file placed in the hub cache
    rgb, _ = build_backbone("resnet18", "none", 3)
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(rgb.state_dict() | {"fc.weight": torch.zeros(1000, 512),
                                   "fc.bias": torch.zeros(1000)},
               hub / "checkpoints" / "resnet18-f37072fd.pth")
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        flow, _ = build_backbone("resnet18", "imagenet", 10)
    finally:
        torch.hub.set_dir(old)
    expected = rgb.conv1.weight.mean(dim=1)
    for c in range(10):
        assert torch.allclose(flow.conv1.weight[:, c], expected)
    assert torch.equal(flow.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)


def test_weight_errors(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty_hub"))
    try:
        with pytest.raises(WeightsError, match=r"resnet18-f37072fd.pth; download https://"):
            imagenet_state_dict("resnet18")
    finally:
        torch.hub.set_dir(old)
    rgb, _ = build_backbone("resnet18", "none", 3)
    torch.save({"state_dict": {f"module.{k}": v for k, v in rgb.state_dict().items()}},
               tmp_path / "rgb.pt")
    loaded, _ = build_backbone("resnet18", str(tmp_path / "rgb.pt"), 3)
    assert torch.equal(loaded.conv1.weight, rgb.conv1.weight)
    with pytest.raises(WeightsError, match="conv1 has 3 input channels but this stream needs 10"):
        build_backbone("resnet18", str(tmp_path / "rgb.pt"), 10)
    with pytest.raises(WeightsError, match="weights file not found"):
        build_backbone("resnet18", str(tmp_path / "nope.pt"), 3)
    with pytest.raises(UserError, match="unknown arch 'resnet17'"):
        build_backbone("resnet17")


def test_resnet101_builds_for_flow():
    net, dim = build_backbone("resnet101", "none", 20)
    assert dim == 2048 and net.conv1.in_channels == 20


def test_lstm_all_step_loss_weights_and_mask():
    w = step_weights(4, torch.tensor([4, 2]), 2, torch.device("cpu"))
    assert torch.allclose(w[0], torch.tensor([1, 2, 3, 4]) / 10)
    assert torch.allclose(w[1], torch.tensor([1 / 3, 2 / 3, 0, 0]))
    logits = torch.zeros(2, 4, 3)
    logits[1, 2:] = 100.0  # masked steps must not count
    logits[1, 2:, 0] = -100.0
    a = lstm_loss(logits, torch.tensor([0, 0]), "all", torch.tensor([4, 2]))
    assert torch.isclose(a, torch.log(torch.tensor(3.0)))


def test_topk_consensus_is_the_mean_of_each_class_k_largest():
    from two_stream.models.consensus import segment_consensus
    x = torch.tensor([[[1.0, 9.0], [5.0, 0.0], [3.0, 6.0], [4.0, 2.0]]])  # [B=1, K=4, C=2]
    assert segment_consensus(x, "topk", 2).tolist() == [[4.5, 7.5]]
    assert torch.equal(segment_consensus(x, "topk", 1), x.amax(1))  # k = 1: max
    assert torch.allclose(segment_consensus(x, "topk", 4), x.mean(1))  # k = K: mean
    assert torch.allclose(segment_consensus(x, "topk", 9), x.mean(1))  # capped at K


def test_bidirectional_lstm_reads_forward_last_and_backward_first():
    """The video readout is fc([forward state after the last segment, backward state after
    the first]): both have seen every segment. The old readout (both directions at the last
    step, where the backward one has seen a single segment) fails this."""
    from two_stream.models.heads import LSTMHead
    torch.manual_seed(0)
    head = LSTMHead(6, 3, hidden=4, bidirectional=True, dropout=0.0).eval()
    feats = torch.randn(2, 5, 6)
    steps, video = head(feats)
    out, _ = head.lstm(feats)
    want = head.fc(torch.cat([out[:, -1, :4], out[:, 0, 4:]], dim=1))
    assert torch.allclose(video, want) and steps.shape == (2, 5, 3)
    assert not torch.allclose(video, steps[:, -1])  # what the old readout returned
    # every segment reaches both halves of the readout: perturb the last one only
    changed = feats.clone()
    changed[:, -1] += 1.0
    _, v2 = head(changed)
    out2, _ = head.lstm(changed)
    assert not torch.allclose(out2[:, 0, 4:], out[:, 0, 4:])  # backward-first saw it
    # with lengths, the forward state is read at each video's last valid step
    _, v3 = head(feats, torch.tensor([5, 3]))
    assert torch.allclose(v3[0], video[0], atol=1e-6)


def test_mmaction2_tsn_checkpoint_keys_map_onto_torchvision(tmp_path):
    """An MMAction2 TSN checkpoint (`{'state_dict': {'backbone.conv1.conv.weight', ...,
    'cls_head.fc_cls.weight'}, 'meta': ...}`) starts our backbone with the same weights."""
    import re

    from two_stream.models.backbones import build_backbone
    net, _ = build_backbone("resnet18", "none", 3)
    mm = {}
    for k, v in net.state_dict().items():
        k = re.sub(r"^conv1\.", "conv1.conv.", k)
        k = re.sub(r"^bn1\.", "conv1.bn.", k)
        k = re.sub(r"(layer\d\.\d)\.conv(\d)\.", r"\1.conv\2.conv.", k)
        k = re.sub(r"(layer\d\.\d)\.bn(\d)\.", r"\1.conv\2.bn.", k)
        k = re.sub(r"downsample\.0\.", "downsample.conv.", k)
        k = re.sub(r"downsample\.1\.", "downsample.bn.", k)
        mm[f"backbone.{k}"] = v + 0.5 if v.is_floating_point() else v
    mm["cls_head.fc_cls.weight"] = torch.zeros(400, 512)
    assert "backbone.layer2.0.downsample.conv.weight" in mm
    torch.save({"state_dict": mm, "meta": {"epoch": 100}}, tmp_path / "tsn_k400.pth")
    loaded, _ = build_backbone("resnet18", str(tmp_path / "tsn_k400.pth"), 3)
    for k, v in loaded.state_dict().items():
        if v.is_floating_point():
            assert torch.equal(v, net.state_dict()[k] + 0.5), k
