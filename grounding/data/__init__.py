"""Annotations and clip features: everything that enters the pipeline from disk."""

from grounding.data.records import AnnotationSet, QueryRecord, ReadReport

__all__ = ["AnnotationSet", "QueryRecord", "ReadReport"]
