"""What turns a video file and a sentence into model inputs, saved with the weights of every checkpoint.

``grounding train`` writes a :class:`PipelineInfo` as ``metadata["pipeline"]`` of the checkpoint's
``config.json``: the text encoder that made the word features, the extraction settings that made the clip
features (:class:`~grounding.video.settings.ExtractionSettings`), and how spans are decoded. ``grounding ground``,
``grounding predict`` and :class:`grounding.Grounder` read it back, so a video is featurised exactly as for training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from grounding.errors import ConfigError, InputError
from grounding.video.settings import ExtractionSettings

PIPELINE_KEY = "pipeline"  # key of PipelineInfo in the metadata of config.json
# Checkpoints written before the extraction settings had one home kept them as flat keys.
_LEGACY_EXTRACTION_KEYS = ("backbone", "clip_seconds", "frames_per_clip", "frame_size", "resize")


@dataclass
class PipelineInfo:
    """The inputs side of a checkpoint.

    Attributes:
        text_encoder: :func:`grounding.text.create_text_encoder` name (``minilm-l6``, ``hf:DIR``, ``glove:FILE``).
        max_words: tokens kept per query.
        syntax: language-graph mode (``auto``, ``dependency``, ``sequential``).
        extraction: the settings the clip features were extracted with; ``extraction.backbone`` None means
            unknown (then only precomputed features can be used, not video files).
        nms: NMS IoU threshold for decoding spans (None = off).
        top_k: spans returned per query by default.
    """

    text_encoder: str = "minilm-l6"
    max_words: int = 32
    syntax: str = "auto"
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    nms: float | None = 0.5
    top_k: int = 5

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "extraction": self.extraction.to_dict()}

    @classmethod
    def from_json(cls, values: Any, source: str = "config.json") -> PipelineInfo:
        """Read ``metadata.pipeline``; the flat extraction keys of older checkpoints are accepted.

        Raises:
            InputError: not a mapping, an unknown key, or an unusable value.
        """
        if not isinstance(values, Mapping):
            raise InputError(f"{source}: metadata.{PIPELINE_KEY} must be a JSON object, got {type(values).__name__}")
        values = dict(values)
        extraction = values.pop("extraction", None) or {}
        if not isinstance(extraction, Mapping):
            raise InputError(f"{source}: metadata.{PIPELINE_KEY}.extraction must be a JSON object")
        extraction = dict(extraction)
        for key in _LEGACY_EXTRACTION_KEYS:
            if key in values:
                value = values.pop(key)
                if value is not None:
                    extraction.setdefault(key, value)
        known = {f.name for f in dataclasses.fields(cls)} - {"extraction"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"{source}: unknown metadata.{PIPELINE_KEY} keys {unknown}; was it written by a newer grounding?"
            )
        try:
            settings = ExtractionSettings.from_mapping(extraction, f"{source}: metadata.{PIPELINE_KEY}.extraction")
        except ConfigError as error:
            raise InputError(str(error)) from None
        return cls(**values, extraction=settings)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None, source: str = "config.json") -> PipelineInfo:
        """The pipeline in a checkpoint's metadata (the defaults, MiniLM-L6 and no known backbone, without one)."""
        values = (metadata or {}).get(PIPELINE_KEY)
        return cls() if values is None else cls.from_json(values, source)
