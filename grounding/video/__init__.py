"""From video files to clip features.

- :mod:`grounding.video.settings`: :class:`ExtractionSettings`, the one home of the extraction settings.
- :mod:`grounding.video.decode`: decord decoding of the frames each clip needs, sampled at clip centres from the
  real frame timestamps (variable frame rate, untrustworthy timestamps, short videos, grayscale and odd sizes
  handled).
- :mod:`grounding.video.backbones`: a small timm-style registry of frame encoders (``efficientnet-lite0``,
  ``efficientnet-lite0-grid``, the motion backbones, ``hf:PATH`` for local transformers vision models) and
  ``register_backbone``.
- :mod:`grounding.video.sources`: which videos (files, folders, list files), their ids, shards.
- :mod:`grounding.video.clips`: the decode -> backbone loop; :func:`extract_clip_features` decodes one video
  into its clip features in memory.
- :mod:`grounding.video.feature_files`: the HDF5 feature files (crash-safe parts, atomic writer, merge, info).
- :mod:`grounding.video.extract`: the resumable, crash-safe, shardable extraction into one HDF5 file
  (``grounding extract``).
- :mod:`grounding.video.synth`: the rendered world of synthetic videos (``grounding synth``).

The names below are imported on first use, so ``import grounding.video.synth`` does not pay for torch or decord::

    from grounding.video import ExtractionSettings, extract_clip_features

    features = extract_clip_features("clip.mp4", ExtractionSettings(backbone="efficientnet-lite0"))
    features.clip_feats   # (T, D) float32; features.clip_centres (T,) seconds; features.duration seconds
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ExtractionSettings": "grounding.video.settings",
    "VideoDecodeError": "grounding.video.decode",
    "VIDEO_EXTENSIONS": "grounding.video.decode",
    "VideoSource": "grounding.video.sources",
    "find_videos": "grounding.video.sources",
    "video_id_for": "grounding.video.sources",
    "VideoClipFeatures": "grounding.video.clips",
    "extract_clip_features": "grounding.video.clips",
    "ExtractionConfig": "grounding.video.extract",
    "extract_features": "grounding.video.extract",
    "create_backbone": "grounding.video.backbones",
    "list_backbones": "grounding.video.backbones",
    "register_backbone": "grounding.video.backbones",
}
__all__ = [
    "VIDEO_EXTENSIONS", "ExtractionConfig", "ExtractionSettings", "VideoClipFeatures", "VideoDecodeError",
    "VideoSource", "create_backbone", "extract_clip_features", "extract_features", "find_videos",
    "list_backbones", "register_backbone", "video_id_for",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grounding.video' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
