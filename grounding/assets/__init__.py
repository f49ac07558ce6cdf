"""Files shipped inside the package, so that a fresh install can find moments without a download.

``rendered-world-flow/``: a checkpoint of the best rendered-world recipe (``configs/rendered-world-1000-flow.yaml``,
trained on the 1000-video world of seed 1, then fitted for ranking with ``grounding fit-ranker``'s defaults),
stored in float16. ``benchmarks/shipped_model.py`` makes it and measures it (docs/demo.md has its figures). It
needs the ``efficientnet-lite0-motion-flow`` backbone (the ``video`` extra) for video files and the offline
MiniLM-L6 text encoder.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODEL_NAME = "rendered-world-flow"
SHIPPED_MODEL_WORLD_SEED = 1  # the rendered world it was trained on: a demo world must be another


def shipped_model_path() -> Path:
    """The folder of the shipped checkpoint (``config.json`` + ``model.safetensors``), for ``Grounder.from_pretrained``."""
    return Path(__file__).resolve().parent / SHIPPED_MODEL_NAME
