import numpy as np
import pytest
import timm
import torch

from mer_core import models
from mer_core.vocab import BACKBONES
from mer_core.gradcam import grad_cam
from mer_core.models import WeightsError, cam_layer, count_parameters, create_model


pytestmark = pytest.mark.usefixtures("one_thread")


def test_seresnext50_parameter_count():
    model = create_model("seresnext50_32x4d", 5)
    assert count_parameters(model) == 25_521_141
    assert model.get_classifier().out_features == 5


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError) as e:
        create_model("resnet18", 5)
    for name in BACKBONES:
        assert name in str(e.value)


def test_allow_any_builds_tiny_models():
    model = create_model("test_resnet", 3, allow_any=True)
    out = model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 3)


def _body_equal(a, b, head="fc."):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith(head))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module"])
def test_local_weights_round_trip_replaces_head(tmp_path, wrap):
    torch.manual_seed(1)
    src = create_model("test_resnet", 1000, allow_any=True)
    state = src.state_dict()
    if wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap != "plain":
        state = {wrap: state, "epoch": 3}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    torch.manual_seed(2)
    model = create_model("test_resnet", 5, pretrained=str(path), allow_any=True)
    assert _body_equal(src, model)
    assert model.get_classifier().out_features == 5
    fresh = create_model("test_resnet", 5, allow_any=True)
    assert not _body_equal(src, fresh)


def test_torchvision_resnet50_checkpoint_loads(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.resnet50()
    path = tmp_path / "resnet50_tv.pth"
    torch.save(tv.state_dict(), path)
    model = create_model("resnet50", 5, pretrained=str(path))
    assert _body_equal(tv, model)
    assert model.fc.out_features == 5


def test_mismatched_weights_name_the_keys(tmp_path):
    state = create_model("test_resnet", 10, allow_any=True).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    del state["layer2.0.bn1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError) as e:
        create_model("test_resnet", 5, pretrained=str(path), allow_any=True)
    msg = str(e.value)
    assert "bad.pth" in msg and "layer1.0.conv1.weight" in msg and "shape" in msg
    assert "layer2.0.bn1.weight" in msg and "extra.weight" in msg


def test_weights_file_missing_or_not_a_state_dict(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        create_model("test_resnet", 5, pretrained=str(tmp_path / "nope.pth"), allow_any=True)
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="state dict"):
        create_model("test_resnet", 5, pretrained=str(path), allow_any=True)


def test_imagenet_offline_says_where_to_put_the_file(monkeypatch):
    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("network unreachable")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(models.timm, "create_model", offline)
    with pytest.raises(RuntimeError) as e:
        create_model("seresnext50_32x4d", 5, pretrained="imagenet")
    assert "train.pretrained" in str(e.value) and "network unreachable" in str(e.value)


def test_grad_cam_shape_range_and_target():
    torch.manual_seed(0)
    model = create_model("test_resnet", 3, allow_any=True)
    x = torch.randn(5, 3, 32, 32)
    cam = grad_cam(model, x, cam_layer(model), batch_size=2)
    assert cam.shape == (5, 32, 32) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    other = grad_cam(model, x, cam_layer(model), target=torch.tensor([0, 1, 2, 0, 1]))
    assert other.shape == cam.shape
    assert not model.training
    with pytest.raises(ValueError, match="layer9"):
        cam_layer(model, "layer9")
