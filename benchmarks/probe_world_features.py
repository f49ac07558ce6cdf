"""Linear probe: do a feature file's clips encode what the rendered world's script says is happening?

For every clip whose centre falls inside exactly one scripted event, the labels are that event's action and
its object's colour and shape (from the world's ``manifest.json``). A linear classifier is fitted on the train
videos' clips (features standardised with train statistics) and scored on the other videos' clips. Accuracy near
the majority-class rate means the features do not separate those concepts linearly, and a grounding model
trained on them has little to generalise from.

    python benchmarks/probe_world_features.py worlds/w300 worlds/w300/features.h5 [--with-diff] [--columns 2560:2577]

``--columns START:END`` probes only those feature columns (e.g. the 17 flow values at the end of
``efficientnet-lite0-motion-flow``'s rows). ``--with-diff`` appends each clip's difference from the previous clip (a crude motion signal). Videos the feature
file does not hold are skipped (and counted), so a file extracted for a subset of the world can be probed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from grounding.data import open_feature_store


def probe_examples(
    world: Path, features: Path, with_diff: bool, columns: slice = slice(None)
) -> dict[str, tuple[np.ndarray, dict[str, list[str]]]]:
    """Per split ("train" / "held-out"): clip features (N, D or 2D; only ``columns``) and their labels per concept."""
    manifest = json.loads((world / "manifest.json").read_text())
    store = open_feature_store(features)
    examples: dict[str, tuple[list[np.ndarray], dict[str, list[str]]]] = {}
    available = set(store.video_ids())
    missing = [video_id for video_id in manifest["videos"] if video_id not in available]
    if missing:
        print(f"{features}: {len(missing)} of the world's {len(manifest['videos'])} videos have no features; skipped")
    for video_id, info in manifest["videos"].items():
        if video_id not in available:
            continue
        split = "train" if info["split"] == "train" else "held-out"
        clip_feats = store.get(video_id)[:, columns]
        if with_diff:
            clip_feats = np.concatenate([clip_feats, np.diff(clip_feats, axis=0, prepend=clip_feats[:1])], axis=1)
        centres = np.asarray(store.attrs(video_id).get("clip_centres", np.arange(len(clip_feats)) + 0.5))
        rows, labels = examples.setdefault(split, ([], {"action": [], "colour": [], "shape": []}))
        for clip, centre in enumerate(centres[: len(clip_feats)]):
            active = [event for event in info["events"] if event["start"] <= centre < event["end"]]
            if len(active) != 1:
                continue
            event = active[0]
            scripted_object = info["objects"][event["obj"]]
            rows.append(clip_feats[clip])
            labels["action"].append(event["action"])
            labels["colour"].append(scripted_object["colour"])
            labels["shape"].append(scripted_object["shape"])
    return {split: (np.stack(rows), labels) for split, (rows, labels) in examples.items()}


def column_range(text: str) -> slice:
    """``"START:END"`` (either side may be empty) as a slice; argparse reports anything else."""
    try:
        start, end = (int(part) if part else None for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END column numbers such as 2560:2577, got {text!r}") from None
    return slice(start, end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", type=Path, help="folder written by grounding synth (holds manifest.json)")
    parser.add_argument("features", type=Path, help="HDF5 written by grounding extract for that world's videos")
    parser.add_argument("--with-diff", action="store_true", help="append clip-to-clip differences")
    parser.add_argument("--steps", type=int, default=300, help="full-batch Adam steps (default 300)")
    parser.add_argument("--columns", type=column_range, default=slice(None), metavar="START:END",
                        help="probe only feature columns START to END-1 (default: all)")
    args = parser.parse_args()
    torch.manual_seed(0)
    examples = probe_examples(args.world, args.features, args.with_diff, args.columns)
    train_x, train_labels = examples["train"]
    test_x, test_labels = examples["held-out"]
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-5
    train_t = torch.from_numpy((train_x - mean) / std)
    test_t = torch.from_numpy((test_x - mean) / std)
    print(f"{args.features}: {len(train_t)} train clips, {len(test_t)} held-out clips, D={train_t.shape[1]}")
    for concept in ("action", "colour", "shape"):
        classes = sorted(set(train_labels[concept]))
        index = {name: position for position, name in enumerate(classes)}
        train_y = torch.tensor([index[name] for name in train_labels[concept]])
        test_y = torch.tensor([index.get(name, -1) for name in test_labels[concept]])
        classifier = torch.nn.Linear(train_t.shape[1], len(classes))
        optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3, weight_decay=1e-3)
        for _ in range(args.steps):
            loss = torch.nn.functional.cross_entropy(classifier(train_t), train_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            train_accuracy = float((classifier(train_t).argmax(1) == train_y).float().mean())
            test_accuracy = float((classifier(test_t).argmax(1) == test_y).float().mean())
        majority = np.bincount(test_y[test_y >= 0].numpy()).max() / len(test_y)
        print(f"  {concept:<7} {len(classes):>2} classes: train {train_accuracy:.2f}  held-out {test_accuracy:.2f}  "
              f"(majority class {majority:.2f})")


if __name__ == "__main__":
    main()
