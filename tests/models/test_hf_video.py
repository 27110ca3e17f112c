"""The transformer families are transformers' own classes, adapted only at the edge."""
from __future__ import annotations

import pytest
import torch
from transformers import TimesformerForVideoClassification, VideoMAEForVideoClassification, VivitForVideoClassification

from harp.config.schema import ModelConfig
from harp.models import build_model

CLASSES = {"timesformer": TimesformerForVideoClassification, "vivit": VivitForVideoClassification, "videomae": VideoMAEForVideoClassification}


def _tiny(name: str, **options):
    torch.manual_seed(0)
    return build_model(ModelConfig(family=name, size="tiny", options=options), 5).eval()


@pytest.mark.parametrize("name", list(CLASSES))
def test_harp_clips_equal_transformers_own_forward(name):
    """(B, C, T, H, W) through our forward == (B, T, C, H, W) through the transformers class's forward."""
    model = _tiny(name)
    assert isinstance(model, CLASSES[name])
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ours = model(clips)
        theirs = CLASSES[name].forward(model, pixel_values=clips.permute(0, 2, 1, 3, 4).contiguous()).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vivit", "videomae"])
def test_sdpa_is_used_and_equals_eager_attention(name):
    sdpa = _tiny(name)
    assert sdpa.config._attn_implementation == "sdpa"
    eager = _tiny(name, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    eager.load_state_dict(sdpa.state_dict())
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(clips), eager(clips), rtol=1e-5, atol=1e-5)


def test_head_dropout_is_the_family_dropout():
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="vivit", size="tiny", dropout=0.9), 5)
    assert model.head_dropout.p == 0.9 and model.config.harp_head_dropout == 0.9
    clips = torch.randn(4, 3, 8, 32, 32)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(clips), model(clips))  # dropout active in training
        model.eval()
        assert torch.equal(model(clips), model(clips))


def _legacy_vivit(key: str) -> str:
    """Our (transformers 5) ViViT names -> the names in the published google/vivit-b-16x2-kinetics400 files."""
    for new, old in (("vivit.layers.", "vivit.encoder.layer."), ("attention.q_proj", "attention.attention.query"),
                     ("attention.k_proj", "attention.attention.key"), ("attention.v_proj", "attention.attention.value"),
                     ("attention.o_proj", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")):
        key = key.replace(new, old)
    return key


def _legacy_videomae(key: str) -> str:
    """The published MCG-NJU VideoMAE files keep the query/value biases as q_bias/v_bias."""
    return key.replace("attention.attention.query.bias", "attention.attention.q_bias").replace(
        "attention.attention.value.bias", "attention.attention.v_bias")


@pytest.mark.parametrize("name, legacy", [("vivit", _legacy_vivit), ("videomae", _legacy_videomae)])
def test_published_checkpoint_key_names_load_through_hf_sources(name, legacy, tmp_path):
    """hf:DIR goes through transformers' own loading, so the key renames of old checkpoints apply."""
    from safetensors.torch import save_file

    from harp.models import get_family
    from harp.models.pretrained import load_pretrained

    source = _tiny(name)
    renamed = {legacy(k): v.contiguous() for k, v in source.state_dict().items()}
    assert set(renamed) != set(source.state_dict())  # the renames really change names
    source.config.save_pretrained(tmp_path)
    save_file(renamed, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    torch.manual_seed(1)
    target = build_model(ModelConfig(family=name, size="tiny"), 5).eval()
    report = load_pretrained(target, get_family(name), f"hf:{tmp_path}")
    assert report.clean and report.matched_fraction == 1.0, report.summary()
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(clips), source(clips), rtol=0, atol=0)
