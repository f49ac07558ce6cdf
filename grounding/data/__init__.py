"""Annotations and clip features: everything that enters the pipeline from disk.

- :mod:`grounding.data.records`: :class:`QueryRecord`, the one typed record every reader produces.
- :mod:`grounding.data.annotations`: :func:`read_annotations` and :func:`detect_format`, over one reader module per
  format family: :mod:`~grounding.data.charades_sta` (text + Charades CSV durations),
  :mod:`~grounding.data.json_annotations` (2D-TAN/MMN, Charades-CD json), :mod:`~grounding.data.moment_detr`
  (jsonl); the field checks they share are in :mod:`~grounding.data.annotation_fields`.
- :mod:`grounding.data.features`: clip-feature stores (HDF5 file or folder of ``.npy``/``.pt``).
- :mod:`grounding.data.resample`: resampling ``[T, D]`` clip features to a fixed number of clips.
"""

from grounding.data.annotations import ANNOTATION_FORMATS, detect_format, read_annotations, read_durations
from grounding.data.features import FeatureStore, HDF5FeatureStore, FolderFeatureStore, open_feature_store
from grounding.data.records import AnnotationSet, QueryRecord, ReadReport
from grounding.data.resample import pad_clips, resample_clips

__all__ = [
    "ANNOTATION_FORMATS",
    "AnnotationSet",
    "FeatureStore",
    "FolderFeatureStore",
    "HDF5FeatureStore",
    "QueryRecord",
    "ReadReport",
    "detect_format",
    "open_feature_store",
    "pad_clips",
    "read_annotations",
    "read_durations",
    "resample_clips",
]
