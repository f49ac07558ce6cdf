"""Training-time augmentation of a query's video: a random temporal crop that keeps the whole moment.

Frozen clip features of a few hundred videos are easy to memorise: a model can learn *where* each training
video's answers lie instead of *what* the sentence describes. Cropping the video around the moment changes the
moment's position and its share of the video on every epoch, while the content of the moment stays the same.

The crop works on the feature file's own clips (before they are resampled to the model's ``num_clips``), so it
adds no interpolation of its own. Clip ``t`` of a video with ``T`` stored clips spans
``[t, t+1) * duration / T`` seconds, the same grid the rest of the toolkit assumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grounding.errors import ConfigError


@dataclass(frozen=True)
class CropResult:
    """A cropped video: ``clip_feats`` (T', D), its ``duration`` in seconds and the shifted target window."""

    clip_feats: np.ndarray
    duration: float
    target_window: tuple[float, float]
    first_clip: int


@dataclass(frozen=True)
class TemporalCrop:
    """Randomly crop a video to a window of whole stored clips that contains the target moment.

    With probability ``probability`` a sample is cropped: the window's first clip is drawn uniformly from the
    clips before the moment's first clip, its end uniformly from the clips after the moment's last clip (both
    ends inclusive of "no crop on this side"). The target is shifted into the window and clipped to it.

    Args:
        probability: chance that one sample is cropped, in [0, 1].
    """

    probability: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.probability, bool) or not 0.0 <= float(self.probability) <= 1.0:
            raise ConfigError(f"train.crop_probability must be in [0, 1], got {self.probability!r}")

    def __call__(
        self,
        rng: np.random.Generator,
        clip_feats: np.ndarray,
        duration: float,
        target_window: tuple[float, float],
    ) -> CropResult:
        """Crop one video (or return it unchanged).

        Args:
            rng: the sample's generator (the caller derives it from seed, epoch and sample index).
            clip_feats: (T, D) stored clip features of the whole video.
            duration: the video's length in seconds.
            target_window: (start, end) in seconds.

        Returns:
            :class:`CropResult`; ``first_clip`` is 0 and the inputs come back unchanged when not cropped.
        """
        num_clips = clip_feats.shape[0]
        start, end = target_window
        unchanged = CropResult(clip_feats, duration, (start, end), 0)
        if self.probability <= 0 or rng.random() >= self.probability or num_clips < 2:
            return unchanged
        clip_seconds = duration / num_clips
        end = min(end, duration)
        first_inside = min(max(int(math.floor(start / clip_seconds)), 0), num_clips - 1)
        last_inside = min(max(int(math.ceil(end / clip_seconds)) - 1, first_inside), num_clips - 1)
        first = int(rng.integers(0, first_inside + 1))
        stop = int(rng.integers(last_inside + 1, num_clips + 1))
        offset = first * clip_seconds
        new_duration = (stop - first) * clip_seconds
        new_start = min(max(start - offset, 0.0), new_duration)
        new_end = min(max(end - offset, new_start), new_duration)
        return CropResult(clip_feats[first:stop], new_duration, (new_start, new_end), first)
