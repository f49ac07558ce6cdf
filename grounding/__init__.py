"""grounding: temporal moment grounding.

Given a video and a sentence, find the start and end of the moment the sentence describes; given a corpus
of videos and a sentence, rank the videos by their best moment; run Charades-STA style benchmarks honestly.

The sub-packages follow the data's path: ``data`` (annotations, clip features) -> ``video`` / ``text``
(encoders) -> ``model`` (graph and attention layers, span scoring) -> ``ranking`` -> ``eval`` (metrics,
a numpy-only leaf) and ``cli``.
"""

__version__ = "0.1.0"
