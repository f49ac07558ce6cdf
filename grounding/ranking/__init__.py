"""Rank a corpus of videos for a sentence: stage 1 retrieves by embedding, stage 2 reranks with the full model."""
