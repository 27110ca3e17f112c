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
