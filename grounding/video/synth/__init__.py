"""The rendered world: coloured shapes doing scripted actions, rendered to H.264 mp4 with Charades-STA annotations.

``world`` draws each video's script (objects, events, clutter), ``language`` its sentences, ``render`` its frames
and mp4, and ``dataset`` a whole folder (splits, annotations, durations, manifest). See ``docs/synth.md``.
"""

from grounding.video.synth.dataset import DatasetPlan, SynthConfig, SynthSummary, build_dataset, plan_dataset

__all__ = ["DatasetPlan", "SynthConfig", "SynthSummary", "build_dataset", "plan_dataset"]
