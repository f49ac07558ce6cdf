"""Benchmarks that probe what a checkpoint understands: the antonym benchmark (:mod:`grounding.bench.antonyms`)."""
