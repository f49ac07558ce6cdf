"""The one home of the extraction settings: what turns a video file into clip features.

The same :class:`ExtractionSettings` is what ``grounding extract`` is asked for, what it records in the feature
file's HDF5 attributes, what a training config's ``data`` section may pin, and what a checkpoint remembers so that
``grounding ground --video`` and :class:`grounding.Grounder` extract features exactly as training read them.

A field left ``None`` means "not pinned": at extraction, the backbone's own default (its input size, its
frames per input); in a training config or an old checkpoint, "read it from the feature file". ``resolved`` gives
the settings an extraction actually used, every field filled in.

    settings = ExtractionSettings(backbone="efficientnet-lite0-motion", frame_size=160)
    attrs = settings.to_attrs()                 # {"backbone": ..., "size": 160, ...}, as the HDF5 file stores them
    ExtractionSettings.from_attrs(attrs) == settings
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from grounding.data.features import plain_attr
from grounding.errors import ConfigError, InputError

RESIZE_MODES: tuple[str, ...] = ("squash", "crop")
# The HDF5 attribute each field is stored under (``size`` is the name `grounding extract --size` gave it).
ATTRIBUTE_NAMES: dict[str, str] = {
    "backbone": "backbone",
    "clip_seconds": "clip_seconds",
    "frames_per_clip": "frames_per_clip",
    "frame_size": "size",
    "resize": "resize",
}
DEFAULT_BACKBONE = "efficientnet-lite0"
DEFAULT_CLIP_SECONDS = 1.0
DEFAULT_RESIZE = "squash"


@dataclass(frozen=True)
class ExtractionSettings:
    """How clip features are made from a video.

    Attributes:
        backbone: frame backbone registry name or ``hf:PATH`` (:mod:`grounding.video.backbones`); None = not
            pinned.
        clip_seconds: clip length in seconds (> 0); None = not pinned (extraction default 1.0).
        frames_per_clip: K frames per clip, evenly spaced inside it, features averaged (>= 1); None = the
            backbone's frames per input.
        frame_size: decoded frame side in pixels (>= 8); None = the backbone's input size.
        resize: ``"squash"`` or ``"crop"`` (:mod:`grounding.video.decode`); None = not pinned (``"squash"``).

    Raises:
        ConfigError: a value out of range, naming the field (``where`` prefixes it, e.g. ``data.``).
    """

    backbone: str | None = None
    clip_seconds: float | None = None
    frames_per_clip: int | None = None
    frame_size: int | None = None
    resize: str | None = None

    def __post_init__(self) -> None:
        self.check()

    def check(self, where: str = "") -> None:
        """Raise :class:`ConfigError` naming ``<where><field>`` for the first unusable value."""
        if self.backbone is not None and (not isinstance(self.backbone, str) or not self.backbone.strip()):
            raise ConfigError(f"{where}backbone must be a backbone name or null, got {self.backbone!r}")
        seconds = self.clip_seconds
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf
        ):
            raise ConfigError(f"{where}clip_seconds must be a positive number of seconds, got {seconds!r}")
        for name, minimum in (("frames_per_clip", 1), ("frame_size", 8)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                raise ConfigError(f"{where}{name} must be an integer >= {minimum}, got {value!r}")
        if self.resize is not None and self.resize not in RESIZE_MODES:
            raise ConfigError(f"{where}resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")

    # --- combining ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def pinned(self) -> dict[str, Any]:
        """The fields that are set (not None)."""
        return {key: value for key, value in self.to_dict().items() if value is not None}

    def filled_from(self, other: ExtractionSettings) -> ExtractionSettings:
        """These settings, with each unpinned field taken from ``other``."""
        return dataclasses.replace(other, **self.pinned())

    def conflicts(self, other: ExtractionSettings, other_name: str = "other") -> list[str]:
        """``"field=mine (<other_name>: theirs)"`` for every field pinned in both with different values."""
        mine, theirs = self.pinned(), other.pinned()
        return [
            f"{key}={mine[key]!r} ({other_name}: {theirs[key]!r})"
            for key in mine
            if key in theirs and not _same(mine[key], theirs[key])
        ]

    def resolved(self, default_frame_size: int, default_frames_per_clip: int) -> ExtractionSettings:
        """Every field filled in: the extraction defaults and the backbone's own size and frames per input."""
        return ExtractionSettings(
            backbone=self.backbone or DEFAULT_BACKBONE,
            clip_seconds=float(self.clip_seconds if self.clip_seconds is not None else DEFAULT_CLIP_SECONDS),
            frames_per_clip=int(self.frames_per_clip or default_frames_per_clip),
            frame_size=int(self.frame_size or default_frame_size),
            resize=self.resize or DEFAULT_RESIZE,
        )

    # --- files ----------------------------------------------------------------------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """The pinned fields under their HDF5 attribute names (``frame_size`` -> ``size``)."""
        return {ATTRIBUTE_NAMES[key]: value for key, value in self.pinned().items()}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], source: str = "feature file") -> ExtractionSettings:
        """Read the settings a feature file (or one of its videos) records; absent attributes stay None.

        Raises:
            InputError: an attribute holds a value no extraction could have written.
        """
        values: dict[str, Any] = {}
        for key, attr in ATTRIBUTE_NAMES.items():
            value = plain_attr(attrs.get(attr))
            if value is None:
                continue
            if key in ("frames_per_clip", "frame_size") and isinstance(value, float) and value.is_integer():
                value = int(value)
            if key == "clip_seconds" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            values[key] = value
        try:
            return cls(**values)
        except ConfigError as error:
            raise InputError(f"{source}: attribute {error}; re-extract it with `grounding extract`") from None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> ExtractionSettings:
        """From a JSON/YAML mapping with field names (``frame_size``; the attribute name ``size`` is accepted too).

        Raises:
            ConfigError: an unknown key (naming ``where``) or a bad value.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        mapped = {("frame_size" if key == "size" else key): value for key, value in values.items()}
        unknown = sorted(set(mapped) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown extraction setting(s) {unknown}; known: {', '.join(sorted(known))}")
        try:
            return cls(**mapped)
        except ConfigError as error:  # the same message, with where it was read
            raise ConfigError(f"{where}.{error}") from None


def _same(first: Any, second: Any) -> bool:
    if isinstance(first, (int, float)) and isinstance(second, (int, float)):
        return float(first) == float(second)
    return first == second
