"""Optimisers, the two weight regularisers, and the schedules: exact numbers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harp.config.schema import OptimConfig
from harp.errors import ConfigError
from harp.train.lr_schedule import build_lr_schedule, lr_factor
from harp.train.optim import build_optimizer, decayed_params, l2_penalty, split_decay_params


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), nn.Flatten(), nn.LayerNorm(4 * 2 * 2 * 2), nn.Linear(32, 5))


def test_norm_weights_and_biases_are_never_decayed() -> None:
    net = _net()
    decay, no_decay = split_decay_params(net)
    assert {id(p) for p in decay} == {id(net[0].weight), id(net[4].weight)}
    assert len(no_decay) == 2 + 2 + 2  # conv/linear biases, batchnorm and layernorm weight+bias
    opt = build_optimizer(net, OptimConfig(name="adamw", weight_decay=0.05))
    wd = {g["group"]: g["weight_decay"] for g in opt.param_groups}
    assert wd == {"decay": 0.05, "no_decay": 0.0}
    assert {id(p) for p in decayed_params(opt)} == {id(net[0].weight), id(net[4].weight)}


def test_optimiser_kinds_and_sgd_options() -> None:
    net = _net()
    sgd = build_optimizer(net, OptimConfig(name="sgd", lr=0.1, momentum=0.8, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8
    assert type(build_optimizer(net, OptimConfig(name="adam"))) is torch.optim.Adam
    assert type(build_optimizer(net, OptimConfig(name="adamw"))) is torch.optim.AdamW
    with pytest.raises(ConfigError, match="momentum"):
        build_optimizer(net, OptimConfig(name="sgd", momentum=0.0, nesterov=True))


def test_l2_penalty_is_half_l2_sum_of_squares_of_decayed_weights() -> None:
    net = _net()
    opt = build_optimizer(net, OptimConfig(name="sgd"))
    expected = 0.5 * 0.1 * (net[0].weight.pow(2).sum() + net[4].weight.pow(2).sum())
    torch.testing.assert_close(l2_penalty(decayed_params(opt), 0.1), expected)
    assert l2_penalty(decayed_params(opt), 0.0) is None
    # its gradient is l2 * w (eq. 8 of 000 differentiated)
    l2_penalty(decayed_params(opt), 0.1).backward()
    torch.testing.assert_close(net[4].weight.grad, 0.1 * net[4].weight.detach())
    assert net[4].bias.grad is None


def _one_step(name: str, wd: float, l2: float) -> torch.Tensor:
    torch.manual_seed(1)
    lin = nn.Linear(6, 3)
    opt = build_optimizer(lin, OptimConfig(name=name, lr=0.1, momentum=0.0, weight_decay=wd))
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(lin(x), y)
        penalty = l2_penalty(decayed_params(opt), l2)
        (loss + penalty if penalty is not None else loss).backward()
        opt.step()
        opt.zero_grad()
    return lin.weight.detach().clone()


def test_weight_decay_and_l2_are_separate_knobs() -> None:
    # For plain SGD the two coincide (coupled decay == gradient of the L2 term) ...
    torch.testing.assert_close(_one_step("sgd", 0.01, 0.0), _one_step("sgd", 0.0, 0.01))
    # ... for AdamW (decoupled decay) they do not, and both differ from no regularisation.
    plain, decay, l2 = _one_step("adamw", 0.0, 0.0), _one_step("adamw", 0.3, 0.0), _one_step("adamw", 0.0, 0.3)
    assert not torch.allclose(decay, l2) and not torch.allclose(plain, decay) and not torch.allclose(plain, l2)


def test_cosine_with_linear_warmup() -> None:
    f = lr_factor(OptimConfig(schedule="cosine", warmup_epochs=1), steps_per_epoch=10, epochs=5)
    assert [f(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(30) == pytest.approx(0.5)  # halfway through the 40 post-warmup steps
    assert f(50) == pytest.approx(0.0, abs=1e-12)


def test_step_milestones_are_in_epochs() -> None:
    f = lr_factor(OptimConfig(schedule="step", milestones=[30, 40, 50], gamma=0.1), steps_per_epoch=7, epochs=60)
    assert f(30 * 7 - 1) == pytest.approx(1.0)
    assert f(30 * 7) == pytest.approx(0.1)
    assert f(40 * 7) == pytest.approx(0.01)
    assert f(50 * 7 + 3) == pytest.approx(0.001)
    with pytest.raises(ConfigError, match="milestones"):
        lr_factor(OptimConfig(schedule="step"), 10, 5)


def test_exponential_decays_gamma_per_epoch_and_none_is_flat() -> None:
    f = lr_factor(OptimConfig(schedule="exponential", gamma=0.9), steps_per_epoch=4, epochs=10)
    assert f(0) == 1.0 and f(4) == pytest.approx(0.9) and f(8) == pytest.approx(0.81) and f(2) == pytest.approx(math.sqrt(0.9))
    g = lr_factor(OptimConfig(schedule="none", warmup_epochs=0.5), steps_per_epoch=4, epochs=10)
    assert [g(s) for s in (0, 1, 2, 30)] == pytest.approx([0.5, 1.0, 1.0, 1.0])


def test_linear_decays_to_zero_as_the_hugging_face_trainer_does() -> None:
    """Kaur fine-tuned with the Trainer's default schedule: the lr falls linearly to 0 at the last step."""
    from transformers import get_linear_schedule_with_warmup

    epochs, steps = 8, 113  # 900 clips at batch 8
    f = lr_factor(OptimConfig(schedule="linear"), steps_per_epoch=steps, epochs=epochs)
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    hf = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=epochs * steps)
    reference = [hf.lr_lambdas[0](s) for s in range(epochs * steps + 1)]
    assert [f(s) for s in range(epochs * steps + 1)] == pytest.approx(reference)
    assert f(0) == 1.0 and f(epochs * steps // 2) == pytest.approx(0.5) and f(epochs * steps) == 0.0
    # after a warmup, from the full lr down to zero over the remaining steps (as the Trainer's warmup_steps)
    w = lr_factor(OptimConfig(schedule="linear", warmup_epochs=1), steps_per_epoch=10, epochs=5)
    assert w(9) == pytest.approx(1.0) and w(10) == pytest.approx(1.0) and w(30) == pytest.approx(0.5) and w(50) == 0.0


def test_scheduler_steps_the_optimiser_lr_and_its_state_is_plain() -> None:
    net = nn.Linear(2, 2)
    opt = build_optimizer(net, OptimConfig(name="sgd", lr=0.2, schedule="step", milestones=[1], gamma=0.5))
    sched = build_lr_schedule(opt, OptimConfig(name="sgd", lr=0.2, schedule="step", milestones=[1], gamma=0.5), steps_per_epoch=2, epochs=3)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.2, 0.2, 0.1, 0.1])
    assert all(v is None for v in sched.state_dict()["lr_lambdas"])
