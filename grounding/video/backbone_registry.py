"""The backbone registry: :func:`register_backbone`, :func:`list_backbones`, :func:`backbone_entry`, and
:class:`Backbone`, a frame encoder with its preprocessing (see :mod:`grounding.video.backbones` for the
registered names and how to add one).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from grounding.errors import InputError

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


def rgb_triple(value: Sequence[float] | float, what: str, name: str) -> tuple[float, float, float]:
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
    mean_rgb, std_rgb = rgb_triple(mean, "mean", name), rgb_triple(std, "std", name)
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


def check_device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise InputError(f"--device {device!r} is not a torch device; use 'cpu' or 'cuda' (or 'cuda:1').") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device!r}: this torch has no CUDA device available; use --device cpu.")
    return resolved
