"""TimeSformer on SDPA: the same weights give transformers' own logits, and eager stays selectable."""
from __future__ import annotations

import pytest
import torch
from transformers import TimesformerConfig, TimesformerForVideoClassification
from transformers.models.timesformer.modeling_timesformer import TimesformerSelfAttention

from harp.config.schema import ModelConfig
from harp.errors import ConfigError
from harp.models import build_model, get_family
from harp.models.pretrained import load_pretrained
from harp.models.timesformer_sdpa import SdpaTimesformerSelfAttention, set_timesformer_attention

# A TimeSformer of the base model's layout (16 px patches, CLS token, divided attention) at a
# width and depth a CPU test can afford, with several heads so the head split is exercised.
SMALL = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 96, "patch_size": 16}


def _attention_kinds(model: torch.nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, TimesformerSelfAttention)}


def _hf_checkpoint(tmp_path, frames: int = 4, size: int = 64) -> TimesformerForVideoClassification:
    """A transformers TimeSformer saved with ``save_pretrained``: what ``hf:DIR`` sources hold."""
    torch.manual_seed(3)
    config = TimesformerConfig(image_size=size, num_frames=frames, num_labels=5, attention_type="divided_space_time", **SMALL)
    reference = TimesformerForVideoClassification(config).eval()
    reference.save_pretrained(tmp_path)
    return reference


def _harp_model(attention: str | None, frames: int = 4, size: int = 64) -> torch.nn.Module:
    options = dict(SMALL) | ({"attn_implementation": attention} if attention else {})
    torch.manual_seed(0)  # different initial weights from the checkpoint: loading must replace them all
    cfg = ModelConfig(family="timesformer", size="tiny", frames=frames, frame_size=size, dropout=0.0, options=options)
    return build_model(cfg, 5).eval()


def test_sdpa_is_the_default_and_eager_stays_selectable():
    assert _attention_kinds(_harp_model(None)) == {SdpaTimesformerSelfAttention}
    assert _attention_kinds(_harp_model("sdpa")) == {SdpaTimesformerSelfAttention}
    assert _attention_kinds(_harp_model("eager")) == {TimesformerSelfAttention}
    with pytest.raises(ConfigError, match="attn_implementation='flash'.*sdpa, eager"):
        _harp_model("flash")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_hf_weights_give_transformers_logits_in_fp32(attention, tmp_path):
    """The same transformers checkpoint loaded through ``hf:DIR``: logits within 1e-4 of the
    transformers class's own forward (eager attention), for both attention kinds."""
    reference = _hf_checkpoint(tmp_path)
    model = _harp_model(attention)
    report = load_pretrained(model, get_family("timesformer"), f"hf:{tmp_path}")
    assert report.matched_fraction == 1.0, report.summary()
    clips = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        theirs = reference(pixel_values=clips.transpose(1, 2).contiguous()).logits
        ours = model(clips)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    assert theirs.abs().max() > 1e-2  # not a trivially zero output


def test_gradients_match_eager():
    """Training goes through the same math: every parameter's gradient agrees with eager's."""
    sdpa, eager = _harp_model("sdpa"), _harp_model("eager")
    eager.load_state_dict(sdpa.state_dict())
    clips = torch.randn(2, 3, 4, 64, 64)
    for model in (sdpa, eager):
        model.train()
        model(clips).logsumexp(-1).sum().backward()
    for (name, a), (_, b) in zip(sdpa.named_parameters(), eager.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=f"gradient of {name}")


def test_attention_probabilities_still_come_out_for_rollout():
    """``output_attentions`` (harp explain's attention rollout) falls back to the eager math."""
    model = _harp_model("sdpa")
    clips = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        out = model.timesformer(pixel_values=clips.transpose(1, 2), output_attentions=True)
    assert out.attentions is not None and len(out.attentions) == SMALL["num_hidden_layers"]
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones_like(out.attentions[0].sum(-1)))


def test_switching_back_and_forth_keeps_the_parameters():
    model = _harp_model("sdpa")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_timesformer_attention(model, "eager")
    assert _attention_kinds(model) == {TimesformerSelfAttention}
    set_timesformer_attention(model, "sdpa")
    assert _attention_kinds(model) == {SdpaTimesformerSelfAttention}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
