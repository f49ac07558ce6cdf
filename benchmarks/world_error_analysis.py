"""Where a trained model fails on a rendered world: R1@0.5 and R1@0.1 per action, query kind and moment length.

Grounds every query of one split with a checkpoint (the public pipeline: ``Grounder.from_pretrained``, features
from the run's feature file) and groups the hits by what the world's ``manifest.json`` says about the asked
event: its action, whether the query is ordered ("after X, Y"), and the moment's length as a fraction of the
video. R1@0.1 beside R1@0.5 separates "found the event, missed its boundaries" from "found another event".

    python benchmarks/world_error_analysis.py runs/w1000 worlds/w1000 --features worlds/w1000/features-motion.h5 \\
        [--split test] [--json errors.json]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from grounding.data import open_feature_store
from grounding.eval.iou import temporal_iou
from grounding.inference import Grounder


def length_bin(fraction: float) -> str:
    return "length < 10 %" if fraction < 0.1 else "length 10-25 %" if fraction < 0.25 else "length >= 25 %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="run folder (uses best/) or checkpoint folder")
    parser.add_argument("world", type=Path, help="folder written by grounding synth (holds manifest.json)")
    parser.add_argument("--features", type=Path, required=True, help="that world's clip-feature file")
    parser.add_argument("--split", default="test", help="train, test or test_novel (default test)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()

    manifest = json.loads((args.world / "manifest.json").read_text())
    grounder = Grounder.from_pretrained(args.checkpoint)
    store = open_feature_store(args.features)
    hits: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    videos = [(video_id, info) for video_id, info in sorted(manifest["videos"].items()) if info["split"] == args.split]
    for video_id, info in tqdm(videos, desc="grounding", unit="video"):
        queries = info["queries"]
        if not queries:
            continue
        video = grounder.encode_features(store.get(video_id), info["duration"], video_id)
        result = grounder.predict(video, [query["sentence"] for query in queries], top_k=1)
        for query, spans in zip(queries, result.spans):
            truth = np.array([[query["start"], min(query["end"], info["duration"])]])
            top = np.array([[spans[0].start, spans[0].end]])
            overlap = float(temporal_iou(top, truth)[0, 0])
            outcome = (overlap >= 0.5, overlap >= 0.1)
            event = info["events"][query["event"]]
            for group in ("all", f"action: {event['action']}", "ordered" if query["after"] is not None else "plain",
                          length_bin((truth[0, 1] - truth[0, 0]) / info["duration"])):
                hits[group].append(outcome)
    store.close()
    table = {group: {"queries": len(outcomes), "R1@0.5": 100 * float(np.mean([o[0] for o in outcomes])),
                     "R1@0.1": 100 * float(np.mean([o[1] for o in outcomes]))}
             for group, outcomes in sorted(hits.items(), key=lambda item: (item[0] != "all", item[0]))}
    print(f"| {args.split} | queries | R1@0.5 | R1@0.1 |\n|---|---|---|---|")
    for group, row in table.items():
        print(f"| {group} | {row['queries']} | {row['R1@0.5']:.1f} | {row['R1@0.1']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "groups": table},
                                        indent=1))


if __name__ == "__main__":
    main()
