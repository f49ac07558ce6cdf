"""``hf:PATH`` backbones: a local transformers vision model folder as a :class:`Backbone` (CLIP and SigLIP vision
towers, ViT, ConvNeXt, ResNet, ..., and the VideoMAE video model). Only local files are read.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grounding.errors import InputError, require_package
from grounding.video.backbone_registry import HF_PREFIX, Backbone, rgb_triple

_VISION_TOWER_CLASSES = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}
_VIDEO_MODEL_TYPES = {"videomae"}


class HFVisionPooler(nn.Module):
    """A transformers vision model reduced to one vector per input.

    Uses ``pooler_output`` when the model has a trained pooler, otherwise the mean of ``last_hidden_state`` over
    its tokens (or over space, for CNN feature maps).

    Args:
        model: the transformers model.
        use_pooler: False when the checkpoint has no pooler weights (a random pooler would scramble features).
        frames_per_input: 1 for image models; F for video models, whose input is ``(N, F, 3, H, W)``.

    Shapes:
        - input: normalised pixels ``(N * F, 3, H, W)``
        - output: ``(N, D)``
    """

    def __init__(self, model: nn.Module, use_pooler: bool = True, frames_per_input: int = 1) -> None:
        super().__init__()
        self.model = model
        self.use_pooler = use_pooler
        self.frames_per_input = frames_per_input
        self._interpolate = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters

    def forward(self, pixels: Tensor) -> Tensor:
        if self.frames_per_input > 1:
            pixels = pixels.reshape(-1, self.frames_per_input, *pixels.shape[1:])  # (N, F, 3, H, W)
        kwargs: dict[str, Any] = {"interpolate_pos_encoding": True} if self._interpolate else {}
        outputs = self.model(pixel_values=pixels, **kwargs)
        pooled = getattr(outputs, "pooler_output", None) if self.use_pooler else None
        if pooled is None:
            hidden = outputs.last_hidden_state
            pooled = hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))
        return pooled.flatten(1)

    def extra_repr(self) -> str:
        return f"use_pooler={self.use_pooler}, frames_per_input={self.frames_per_input}"


def _hf_normalisation(folder: Path, spec: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std in 0-255 pixel units from ``preprocessor_config.json`` (rescale factor taken into account)."""
    config_path = folder / "preprocessor_config.json"
    if not config_path.is_file():
        raise InputError(
            f"backbone {spec!r}: {config_path} is missing, so the image mean/std are unknown; save the model's "
            "image processor into the folder (processor.save_pretrained(folder))."
        )
    try:
        processor = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"backbone {spec!r}: {config_path} is not valid JSON ({error}).") from error
    rescale = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    if processor.get("do_normalize", True):
        if "image_mean" not in processor or "image_std" not in processor:
            raise InputError(f"backbone {spec!r}: {config_path} has no image_mean/image_std.")
        mean = rgb_triple(processor["image_mean"], "image_mean", spec)
        std = rgb_triple(processor["image_std"], "image_std", spec)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return tuple(value / rescale for value in mean), tuple(value / rescale for value in std)


def _square_size(image_size: Any, spec: str) -> int:
    if isinstance(image_size, (list, tuple)):
        if len(set(image_size)) != 1:
            raise InputError(f"backbone {spec!r}: non-square image_size {list(image_size)} is not supported.")
        image_size = image_size[0]
    return int(image_size)


def create_hf_backbone(path: str, device: torch.device) -> Backbone:
    """A :class:`Backbone` around a local transformers vision model folder (see the module docstring)."""
    spec = HF_PREFIX + path
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise InputError(
            f"backbone {spec!r}: {folder} is not a transformers model folder (no config.json); pass the folder "
            "written by model.save_pretrained (downloads are not attempted)."
        )
    require_package("transformers", f"backbone {spec!r}", "video")
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    model_type = getattr(config, "model_type", "")
    vision_config = getattr(config, "vision_config", None)
    if model_type in _VISION_TOWER_CLASSES:
        model_class = getattr(transformers, _VISION_TOWER_CLASSES[model_type])
        size_config = vision_config
    elif vision_config is not None:
        raise InputError(
            f"backbone {spec!r}: '{model_type}' is a multi-modal model; supported multi-modal types are "
            f"{', '.join(sorted(_VISION_TOWER_CLASSES))}. Save its vision tower alone with save_pretrained."
        )
    else:
        model_class = AutoModel
        size_config = config
    if getattr(size_config, "image_size", None) is None:
        raise InputError(
            f"backbone {spec!r}: '{model_type}' has no image_size in its config, so it is not a vision model; "
            "pass a vision model folder (ViT, CLIP, SigLIP, ConvNeXt, VideoMAE, ...)."
        )
    input_size = _square_size(size_config.image_size, spec)
    mean, std = _hf_normalisation(folder, spec)
    frames_per_input = int(getattr(config, "num_frames", 1)) if model_type in _VIDEO_MODEL_TYPES else 1

    verbosity = transformers.logging.get_verbosity()
    progress_bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # the load report lists the text tower's unused weights
    transformers.logging.disable_progress_bar()  # our own progress bar follows on stderr
    try:
        model, loading_info = model_class.from_pretrained(
            folder, local_files_only=True, output_loading_info=True, dtype=torch.float32
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
        if progress_bars:
            transformers.logging.enable_progress_bar()
    missing = sorted(loading_info.get("missing_keys", ()))
    pooler_missing = [key for key in missing if "pooler" in key]
    if len(pooler_missing) != len(missing):
        raise InputError(
            f"backbone {spec!r}: the weights lack {len(missing) - len(pooler_missing)} parameters (e.g. "
            f"{[key for key in missing if 'pooler' not in key][:3]}); the folder is incomplete."
        )
    network = HFVisionPooler(model, use_pooler=not pooler_missing, frames_per_input=frames_per_input).to(device)
    network.eval()
    with torch.inference_mode():
        probe = torch.zeros(frames_per_input, 3, input_size, input_size, device=device)
        dim = int(network(probe).shape[1])
    return Backbone(spec, network, dim, mean, std, input_size, frames_per_input)
