"""Re-export of :mod:`grounding.model.pipeline`, kept so ``from grounding.inference import Grounder`` goes on working.

New code uses the model directly::

    model = GroundingModel.from_pretrained("runs/rendered-world")
    spans = model.ground("video.mp4", "the red circle spins")   # [Span(start, end, score), ...] seconds, best first

or imports :class:`Grounder`, :class:`EncodedVideo`, :class:`GroundingResult`, :func:`time_profile` and
:func:`score_map` from ``grounding.model.pipeline``.
"""

from grounding.model.pipeline import EncodedVideo, Grounder, GroundingResult, score_map, time_profile

__all__ = ["EncodedVideo", "Grounder", "GroundingResult", "score_map", "time_profile"]
