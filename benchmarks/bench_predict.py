"""How long predicting a whole split takes: ``grounding predict`` against the trainer's evaluation pass.

Three timings on one checkpoint and one annotation file, in one run on the same machine:

- ``per-query forward``: the evaluation pass as the trainer ran it before ``grounding predict`` existed: every
  query is a (video, sentence) sample through ``GroundingModel.forward`` in batches of ``--batch-size`` (the
  video is encoded once per query);
- ``predict_moments``: the pass the trainer runs now (``grounding.inference.predict_moments``: queries grouped by
  video, one video encoding per video and batch), on the same in-memory features and sentence features;
- ``grounding predict``: the whole command in a fresh process (start-up, checkpoint and text encoder loading,
  sentence encoding, feature reading, prediction, writing the jsonl).

The two in-process passes alternate ``--repeats`` times (median reported) so machine noise hits both alike; the
command runs ``--repeats`` times too. Both passes must give the same windows (checked, to 1e-6).

    python benchmarks/bench_predict.py --checkpoint runs/rendered-world --annotations worlds/w300/test.txt \\
        --durations worlds/w300/durations.csv --features worlds/w300/features-motion.h5 [--json bench.json]
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports below, which are part of what the command pays

import argparse
import json
import os
import statistics
import subprocess
import sys
import resource
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from grounding.data.annotations import read_annotations
from grounding.data.features import open_feature_store
from grounding.inference import Grounder, predict_moments
from grounding.inference.predict import StoreClips
from grounding.model import decode_spans
from grounding.text.sentence_bank import SentenceBank
from grounding.training.data import GroundingDataset, collate_samples


def per_query_pass(grounder: Grounder, dataset: GroundingDataset, batch_size: int, nms: float | None) -> dict:
    """Every query through the model's forward with its own copy of its video (the former evaluation pass)."""
    moments = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_samples)
    with torch.no_grad():
        for batch in loader:
            output = grounder.model(batch.clip_feats, batch.clip_mask, batch.word_feats, batch.word_mask,
                                    batch.word_edge_index)
            for qid, spans in zip(batch.qids, decode_spans(output, batch.durations, top_k=10, nms_threshold=nms)):
                moments[qid] = np.asarray([list(span) for span in spans]).reshape(-1, 3)
    return moments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--durations", nargs="*", default=None)
    parser.add_argument("--features", required=True)
    parser.add_argument("--batch-size", type=int, default=64, help="queries per forward (the trainer's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    stages: dict[str, float] = {"imports": time.perf_counter() - STARTED}
    started = time.perf_counter()
    grounder = Grounder.from_pretrained(args.checkpoint)
    annotations = read_annotations(args.annotations, durations=args.durations)
    records = list(annotations.records)
    store = open_feature_store(args.features)
    stages["checkpoint, annotations, feature file"] = time.perf_counter() - started
    started = time.perf_counter()
    encoder = grounder.text_encoder
    stages["text encoder load"] = time.perf_counter() - started
    started = time.perf_counter()
    bank = SentenceBank(encoder, [record.sentence for record in records])
    stages["sentence encoding"] = time.perf_counter() - started
    num_clips = grounder.model.config.num_clips
    dataset = GroundingDataset(records, store, bank, num_clips, split="test")
    clips = StoreClips(store, num_clips)
    nms = grounder.pipeline.nms
    timings: dict[str, list[float]] = {"per-query forward": [], "predict_moments": [], "grounding predict": []}
    faults: dict[str, list[int]] = {"per-query forward": [], "predict_moments": []}
    for _ in range(args.repeats):
        started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        reference = per_query_pass(grounder, dataset, args.batch_size, nms)
        timings["per-query forward"].append(time.perf_counter() - started)
        faults["per-query forward"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        grouped = predict_moments(grounder.model, records, clips, bank, top_k=10, nms=nms, batch_size=args.batch_size)
        timings["predict_moments"].append(time.perf_counter() - started)
        faults["predict_moments"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    largest = max(float(np.abs(reference[qid] - grouped[qid]).max()) for qid in reference)
    if set(reference) != set(grouped) or largest > 1e-6:
        raise SystemExit(f"the two passes disagree (largest difference {largest:g})")
    store.close()
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "grounding.cli.main", "predict", "--checkpoint", args.checkpoint,
                   "--annotations", args.annotations, "--features", args.features, "--out", f"{work}/p.jsonl",
                   "--batch-size", str(args.batch_size), "--no-progress"]
        if args.durations:
            command += ["--durations", *args.durations]
        for _ in range(args.repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            timings["grounding predict"].append(time.perf_counter() - started)

    videos = len({record.video_id for record in records})
    print(f"{len(records)} queries of {videos} videos, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"load average before {os.getloadavg()[0]:.2f}; windows of the two passes agree to {largest:.1e}")
    print("stages of the command, timed in this process: "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items()))
    print("| pass | median s | runs (s) | minor page faults per run |")
    print("|---|---|---|---|")
    for name, values in timings.items():
        counts = ", ".join(str(count) for count in faults.get(name, [])) or "(other process)"
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} | {counts} |")
    if args.json:
        args.json.write_text(json.dumps({"queries": len(records), "videos": videos, "timings": timings,
                                         "faults": faults, "stages": stages, "batch_size": args.batch_size},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
