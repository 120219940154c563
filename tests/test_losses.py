import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mer_core.losses import FocalLoss, class_alpha, make_loss


def test_gamma0_no_alpha_equals_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=g) * 3
    target = torch.tensor([0, 1, 2, 3, 4, 4, 1])
    for red in ("mean", "sum", "none"):
        ours = FocalLoss(gamma=0.0, reduction=red)(logits, target)
        torch.testing.assert_close(ours, F.cross_entropy(logits, target, reduction=red))


def test_values_match_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([0, 2])
    alpha = [0.25, 1.0, 2.0]
    gamma = 2.0
    expected = []
    for row, t in zip(logits.tolist(), target.tolist()):
        p = math.exp(row[t]) / sum(math.exp(v) for v in row)
        expected.append(-alpha[t] * (1 - p) ** gamma * math.log(p))
    loss = FocalLoss(gamma=gamma, alpha=alpha, reduction="none")(logits, target)
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-5, atol=1e-7)
    mean = FocalLoss(gamma=gamma, alpha=alpha)(logits, target)
    # "mean" is the summed loss over the batch size, not over the alpha weights
    assert mean.item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    total = FocalLoss(gamma=gamma, alpha=alpha, reduction="sum")(logits, target)
    assert total.item() == pytest.approx(sum(expected), rel=1e-5)


def test_focal_down_weights_easy_examples():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0]])
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    fl = FocalLoss(gamma=2.0, reduction="none")(logits, target)
    assert (fl < ce).all()
    assert (fl / ce)[0] < (fl / ce)[1]  # the easy one is damped more


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_gradients_finite_when_pt_near_one(gamma):
    logits = torch.tensor([[100.0, 0.0, 0.0], [0.0, -100.0, 100.0], [1e4, 0.0, 0.0]],
                          requires_grad=True)
    target = torch.tensor([0, 2, 0])
    loss = FocalLoss(gamma=gamma, alpha=[1.0, 2.0, 3.0])(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # and when the prediction is confidently wrong
    wrong = torch.tensor([[-100.0, 100.0, 0.0]], requires_grad=True)
    FocalLoss(gamma=gamma)(wrong, torch.tensor([0])).backward()
    assert torch.isfinite(wrong.grad).all() and wrong.grad.abs().sum() > 0


def test_bf16_logits_are_computed_in_float32():
    logits = torch.randn(4, 3).bfloat16()
    loss = FocalLoss()(logits, torch.tensor([0, 1, 2, 0]))
    assert loss.dtype == torch.float32


def test_class_alpha_inverse_frequency_training_fold_only():
    y = np.array([0] * 8 + [1] * 4 + [2] * 2)
    w = class_alpha(y, 4, "inverse_frequency")  # class 3 absent from the fold
    assert w.dtype == np.float32 and w.shape == (4,)
    assert np.isfinite(w).all()
    assert w[:3].mean() == pytest.approx(1.0)
    assert w[0] < w[1] < w[2]
    assert w[1] / w[0] == pytest.approx(2.0) and w[2] / w[0] == pytest.approx(4.0)
    assert w[3] == pytest.approx(w[:3].max())


def test_class_alpha_none_and_explicit_and_errors():
    assert class_alpha([0, 1], 2, "none") is None
    assert class_alpha([0, 1], 2, "") is None
    np.testing.assert_allclose(class_alpha([0], 3, "1, 2,0.5"), [1, 2, 0.5])
    with pytest.raises(ValueError, match="one per class"):
        class_alpha([0], 3, "1,2")
    with pytest.raises(ValueError, match="inverse_frequency"):
        class_alpha([0], 3, "inverse_freq")
    with pytest.raises(ValueError, match=">= 0"):
        class_alpha([0], 2, "1,-1")


def test_absent_class_in_batch_and_fold_no_nan():
    y_fold = np.array([0, 0, 1, 1, 1])  # class 2 never in the fold
    for name in ("focal", "weighted_ce", "ce"):
        loss_fn = make_loss(name, y_fold, 3, gamma=2.0, alpha="inverse_frequency")
        logits = torch.randn(4, 3, requires_grad=True)
        loss = loss_fn(logits, torch.tensor([1, 1, 1, 1]))  # batch with one class only
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_make_loss_variants_and_unknown():
    y = np.array([0, 0, 0, 1])
    assert make_loss("ce", y, 2).gamma == 0 and make_loss("ce", y, 2).alpha is None
    wce = make_loss("weighted_ce", y, 2)
    assert wce.gamma == 0 and wce.alpha[1] > wce.alpha[0]
    fl = make_loss("focal", y, 2, gamma=1.5, alpha="none")
    assert fl.gamma == 1.5 and fl.alpha is None
    with pytest.raises(ValueError, match="ce, weighted_ce, focal"):
        make_loss("hinge", y, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="reduction"):
        FocalLoss(reduction="avg")
    with pytest.raises(ValueError, match="3 classes"):
        FocalLoss(alpha=[1.0, 1.0])(torch.zeros(2, 3), torch.tensor([0, 1]))
