"""From a trained checkpoint to predictions: the user-facing predictor and batch prediction.

- :class:`Grounder` (``grounder.py``): a model with its text encoder and frame backbone; video files or clip
  features and sentences in, spans in seconds out. ``from grounding import Grounder`` also works.
- :func:`predict_moments` (``predict.py``): checkpoint x annotation records -> top windows of every query,
  batched by video; ``grounding predict`` and the trainer's evaluation both call it.
- :class:`PipelineInfo` (``pipeline.py``): what a checkpoint records about its inputs (text encoder, extraction
  settings, decoding).
"""

from grounding.inference.grounder import EncodedVideo, Grounder, GroundingResult, score_map, time_profile
from grounding.inference.pipeline import PIPELINE_KEY, PipelineInfo
from grounding.inference.predict import DEFAULT_BATCH_SIZE, predict_moments

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "EncodedVideo",
    "Grounder",
    "GroundingResult",
    "PIPELINE_KEY",
    "PipelineInfo",
    "predict_moments",
    "score_map",
    "time_profile",
]
