"""grounding: temporal moment grounding.

Given a video and a sentence, find the start and end of the moment the sentence describes; given a corpus
of videos and a sentence, rank the videos by their best moment; run Charades-STA style benchmarks honestly.

    from grounding import Grounder
    spans = Grounder.from_pretrained("runs/rendered-world").ground("video.mp4", "a red disc spins")

The sub-packages follow the data's path, imports pointing one way (each imports only those above it):

- ``data``: annotation readers (one ``QueryRecord`` type), clip-feature stores, resampling
- ``video``: decoding, frame backbones, clip-feature extraction (in memory or to HDF5), the rendered world
- ``text``: word features (MiniLM-L6, local Hugging Face encoders, GloVe), the language graph, sentence banks
- ``model``: the grounding model (VLG-Net-style graphs, cross-modal matching, span scoring), losses, save/load
- ``inference``: ``Grounder`` (checkpoint + encoders: files to spans) and batch prediction over annotations
- ``ranking``: the corpus index and ``Ranker`` (a vector engine retrieves, the span scorer reranks)
- ``training``: YAML configs, datasets, the resumable trainer, checkpoints, DDP
- ``eval``: temporal IoU, NMS, the field's metrics, blind baselines (numpy only; used by inference and training)
- ``bench``: benchmarks that probe what a checkpoint understands (antonym swaps)
- ``assets``: files shipped in the package: the demo's model (a float16 checkpoint of the best rendered-world recipe)
- ``report``: the demo's self-contained HTML page (inlined videos, clickable timelines)
- ``demo``: ``grounding demo``, the whole path on a fresh rendered world with the shipped model
- ``app``: ``grounding app``, a local web app (FastAPI): ground a typed sentence in a video, search an index
- ``cli``: the ``grounding`` command, one module per sub-command

Leaf modules serve them all: ``errors`` (the exception types), ``files`` (atomic writes), ``checks`` (config
value checks) and ``version``.
"""

from typing import Any

from grounding.version import __version__

__all__ = ["Grounder", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import grounding` (and every CLI command) does not pay for torch until a predictor is asked for.
    if name == "Grounder":
        from grounding.inference import Grounder

        return Grounder
    raise AttributeError(f"module 'grounding' has no attribute {name!r}")
