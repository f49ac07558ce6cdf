"""The rendered world: coloured shapes doing scripted actions, rendered to H.264 mp4 with Charades-STA annotations.

``world`` draws each video's script (objects, events, clutter), ``language`` its sentences, ``render`` its frames
and mp4, ``relevance`` what each query means and every video where it is true, and ``dataset`` a whole folder
(splits, annotations, relevance files, durations, manifest). See ``docs/synth.md``.
"""

from grounding.video.synth.dataset import (
    DatasetPlan,
    SynthConfig,
    SynthSummary,
    build_dataset,
    plan_dataset,
    write_world_relevance,
)

__all__ = ["DatasetPlan", "SynthConfig", "SynthSummary", "build_dataset", "plan_dataset", "write_world_relevance"]
