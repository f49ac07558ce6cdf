"""From video files to clip features.

- :mod:`grounding.video.decode`: decord decoding of the frames each clip needs, sampled at clip centres from the
  real frame timestamps (variable frame rate, short videos, grayscale and odd sizes handled).
- :mod:`grounding.video.backbones`: a small timm-style registry of frame encoders (``efficientnet-lite0``,
  ``efficientnet-lite0-grid``, ``hf:PATH`` for local transformers vision models) and ``register_backbone``.
- :mod:`grounding.video.extract`: the resumable, crash-safe, shardable extraction into one HDF5 file
  (``grounding extract``) and the merge of shard files (``grounding features merge``).
- :mod:`grounding.video.synth`: the rendered world of synthetic videos (``grounding synth``).

Nothing is imported here, so ``import grounding.video.synth`` does not pay for torch or decord.
"""
