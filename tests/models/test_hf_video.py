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


def _vivit_with_table(frames: int, seed: int):
    """A ViViT at the published checkpoint's spatial grid (224 px / 16 = 14 x 14) but narrow and shallow,
    whose position table encodes each token's (t, y, x) in its first three channels."""
    torch.manual_seed(seed)
    options = {"patch_size": 16, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}
    model = build_model(ModelConfig(family="vivit", size="tiny", frames=frames, frame_size=224, options=options), 5).eval()
    table = model.vivit.embeddings.position_embeddings
    t = frames // 2
    with torch.no_grad():
        grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(14), torch.arange(14), indexing="ij"), dim=-1)
        table[0, 1:, :3] = grid.reshape(-1, 3).float()
        table[0, 0] = -1.0
    return model


def test_vivit_position_table_keeps_its_rows_when_only_the_frames_change():
    """The 16x2 K400 table (32 frames: 16 x 14 x 14 tokens) into an 8-frame model (4 x 14 x 14): time is
    interpolated, the 14 x 14 spatial rows stay where they were (not re-read as 4 x 28 x 28)."""
    from harp.models import get_family
    from harp.models.pretrained import load_pretrained

    source = _vivit_with_table(frames=32, seed=0)
    assert source.vivit.embeddings.position_embeddings.shape == (1, 1 + 16 * 14 * 14, 8)
    target = build_model(ModelConfig(family="vivit", size="tiny", frames=8, frame_size=224, options={
        "patch_size": 16, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}), 5)
    report = load_pretrained(target, get_family("vivit"), "file:/no/config/here.safetensors", state=source.state_dict())
    assert report.clean and report.matched_fraction == 1.0, report.summary()
    table = target.vivit.embeddings.position_embeddings[0].detach()
    assert table.shape == (1 + 4 * 14 * 14, 8) and torch.equal(table[0], torch.full((8,), -1.0))  # CLS kept
    tyx = table[1:, :3].reshape(4, 14, 14, 3)
    rows, cols = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    for k in range(4):
        torch.testing.assert_close(tyx[k, :, :, 1], rows)  # y and x exactly where they were
        torch.testing.assert_close(tyx[k, :, :, 2], cols)
        # linear over time, align_corners=False: new step k samples old step 4k + 1.5
        torch.testing.assert_close(tyx[k, :, :, 0], torch.full((14, 14), 4 * k + 1.5))


def test_vivit_position_table_uses_the_checkpoint_config_grid(tmp_path):
    """A 16-frame 224-px checkpoint (8 x 14 x 14) into a 32-frame 112-px model (16 x 7 x 7): the grid comes from the
    checkpoint's config.json; time then space are interpolated and every frame keeps its spatial layout."""
    from harp.models import get_family
    from harp.models.pretrained import load_pretrained

    source = _vivit_with_table(frames=16, seed=0)
    source.save_pretrained(tmp_path / "ckpt")
    options = {"patch_size": 16, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}
    target = build_model(ModelConfig(family="vivit", size="tiny", frames=32, frame_size=112, options=options), 5)
    report = load_pretrained(target, get_family("vivit"), f"hf:{tmp_path / 'ckpt'}")
    assert report.clean, report.summary()
    tyx = target.vivit.embeddings.position_embeddings[0, 1:, :3].detach().reshape(16, 7, 7, 3)
    y, x = tyx[..., 1], tyx[..., 2]
    profile = y[0, :, 0]  # 14 rows resized to 7: from about 0.5 to about 12.5, increasing
    assert bool((profile.diff() > 0).all()) and profile[0] < 1 and profile[-1] > 12
    torch.testing.assert_close(y, profile.view(1, 7, 1).expand(16, 7, 7), rtol=0, atol=1e-4)  # y: the row only
    torch.testing.assert_close(x, profile.view(1, 1, 7).expand(16, 7, 7), rtol=0, atol=1e-4)  # x: the column only
    # time 8 -> 16, linear, align_corners=False: new step k samples old step k/2 - 1/4 (clamped to [0, 7])
    steps = (torch.arange(16.0) / 2 - 0.25).clamp(0, 7)
    torch.testing.assert_close(tyx[..., 0], steps.view(16, 1, 1).expand(16, 7, 7), rtol=0, atol=1e-4)
