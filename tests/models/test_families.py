"""Every registry family at its tiny size: the input contract, gradients, learning, and a lossless save/load.

One test per family (parametrised over ``FAMILIES``, so a new family is covered the moment it is
registered). Each builds the tiny model once and checks, with numbers:
- logits ``(B, classes)``, finite, from ``(B, C, T, H, W)`` clips of the family's frames/frame size;
- backward reaches every trainable parameter with a finite gradient;
- a few Adam steps on one fixed batch drive the training loss below half its start (the model can
  fit), and every trainable parameter moved (nothing is dead: zero-initialised gates and norms get
  gradients once the layer after them has moved);
- a safetensors save and a load through ``load_pretrained(file:...)`` into a freshly, differently
  initialised model gives bit-identical eval logits (parameters AND buffers are in the state dict).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from harp.config.schema import ModelConfig
from harp.models import FAMILIES, resolve
from harp.models.pretrained import load_pretrained

NUM_CLASSES = 4
BATCH = 4
MIN_STEPS = 4  # so that parameters behind zero-initialised gates have had a gradient
MAX_STEPS = 30
LR = 1e-2
# Plain VGG-style nets without normalisation (C3D) lose their ReLUs at 1e-2: the paper trains it at 3e-3 with SGD.
LR_FOR = {"c3d": 1e-3}


def _build(name: str, seed: int):
    resolved = resolve(ModelConfig(family=name, size="tiny", dropout=0.0), NUM_CLASSES)
    torch.manual_seed(seed)
    return resolved, resolved.spec.build(resolved.args)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tiny_family_contract_learning_and_round_trip(name, tmp_path):
    resolved, model = _build(name, seed=0)
    args = resolved.args
    generator = torch.Generator().manual_seed(1)
    clips = torch.randn(BATCH, 3, args.frames, args.frame_size, args.frame_size, generator=generator)
    labels = torch.arange(BATCH) % NUM_CLASSES

    # Contract and backward.
    model.train()
    logits = model(clips)
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, labels).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    no_grad = [n for n, p in trainable.items() if p.grad is None]
    assert not no_grad, f"{name}: parameters the loss does not reach: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())

    # Adam on one fixed batch until the loss is below half its start (MIN_STEPS to MAX_STEPS steps).
    start = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=LR_FOR.get(name, LR))
    optimizer.step()  # the gradient computed above
    losses = []
    for _ in range(MAX_STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(clips), labels)
        losses.append(loss.item())
        if len(losses) > MIN_STEPS and losses[-1] < 0.5 * losses[0]:
            break
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0], f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {len(losses)} steps"
    dead = [n for n, p in trainable.items() if torch.equal(p.detach(), start[n])]
    assert not dead, f"{name}: parameters that never moved while fitting: {dead[:6]}"

    # Save (safetensors) and load into a differently initialised model: identical eval logits.
    model.eval()
    with torch.no_grad():
        expected = model(clips)
    path = tmp_path / "model.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path))
    _, fresh = _build(name, seed=123)
    fresh.eval()
    differs = [k for k, v in fresh.state_dict().items() if v.is_floating_point() and not torch.equal(v, model.state_dict()[k])]
    assert differs, f"{name}: a fresh model equals the trained one; the round trip would prove nothing"
    report = load_pretrained(fresh, resolved.spec, f"file:{path}")
    assert report.clean and not report.head_replaced and report.matched_fraction == 1.0, report.summary()
    with torch.no_grad():
        assert torch.equal(fresh(clips), expected)
