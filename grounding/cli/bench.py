"""``grounding bench antonyms``: does a checkpoint understand the sentence? (:mod:`grounding.bench.antonyms`)."""

from __future__ import annotations

import argparse
from typing import Any

from grounding.cli._common import add_annotation_options, add_command, write_json_atomic
from grounding.errors import InputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "bench", "probe what a checkpoint understands (antonyms)",
        "Benchmarks of understanding, beyond R@n. 'antonyms': swap each query's action for its opposite\n"
        "('opens' -> 'closes') and measure whether the model prefers the true sentence at the true moment.",
        "grounding bench antonyms --checkpoint CKPT --annotations test.txt --features features.h5",
    )
    commands = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    antonyms = add_command(
        commands, "antonyms", "preference for the true sentence over its antonym, where the model looks, ranks",
        "For every query with an antonym swap (docs/antonyms.md): preference (the true span scores higher for the\n"
        "sentence than for its swap; chance 50 %), the mean IoU of the top span with the true moment for each,\n"
        "and with --index the true video's rank for each; overall and per swap kind, beside two floors: the same\n"
        "model with each video replaced by its mean clip (text only), and with --train the blind moment prior.",
        "grounding bench antonyms --checkpoint runs/rendered-world-1000-flow --annotations worlds/w1000/test.txt "
        "--durations worlds/w1000/durations.csv --features worlds/w1000/features-flow-05.h5 "
        "--train worlds/w1000/train.txt --json antonyms.json",
    )
    antonyms.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint or run folder")
    antonyms.add_argument("--annotations", required=True, metavar="ANN", help="the queries (a test split)")
    add_annotation_options(antonyms)
    antonyms.add_argument("--features", required=True, metavar="FILE", help="clip-feature file of their videos")
    antonyms.add_argument("--table", choices=("auto", "english", "rendered-world"), default="auto",
                          help="swap table (default auto: the one that swaps more of these queries)")
    antonyms.add_argument("--train", default=None, metavar="ANN", help="training annotations: adds the moment prior's row")
    antonyms.add_argument("--index", default=None, metavar="INDEX",
                          help="an index of the videos (grounding index): adds the true video's ranks")
    antonyms.add_argument("--json", default=None, metavar="OUT", help="also write the figures as JSON")
    return parser


def _row(label: str, figures: dict[str, Any]) -> str:
    text = (f"  {label:<26}{figures['queries']:>8}{figures['preference']:>12.2f}{figures['iou_true']:>10.2f}"
            f"{figures['iou_swapped']:>10.2f}")
    if "mean_rank_true" in figures:
        text += f"{figures['mean_rank_true']:>10.2f}{figures['mean_rank_swapped']:>10.2f}{figures['rank_drops']:>8.2f}"
    return text


def run(args: argparse.Namespace) -> int:
    if getattr(args, "bench_command", None) != "antonyms":
        raise InputError("name a benchmark: grounding bench antonyms --help")
    from grounding.bench.antonyms import collect, prior_outcomes, summarize, true_video_ranks
    from grounding.data.annotations import read_annotations
    from grounding.data.features import open_feature_store
    from grounding.inference import Grounder
    from grounding.text.antonyms import TABLES, swap_antonyms

    records = list(read_annotations(args.annotations, format=args.format, durations=args.durations).records)
    tables = TABLES if args.table == "auto" else {args.table: TABLES[args.table]}
    found = {name: {r.qid: swap for r in records if (swap := swap_antonyms(r.sentence, table)) is not None}
             for name, table in tables.items()}
    table = max(found, key=lambda name: len(found[name]))
    swaps = found[table]
    print(f"{args.annotations}: {len(swaps)} of {len(records)} queries have a swap (table {table}); the others are "
          "skipped")
    store = open_feature_store(args.features)
    grounder = Grounder.from_pretrained(args.checkpoint)
    ranks = None
    if args.index:
        from grounding.ranking import Ranker

        ranks = true_video_ranks(Ranker.from_index(args.index), records, swaps)
    rows = {"model": summarize(collect(grounder, records, swaps, store.get, ranks=ranks)),
            "text-only control": summarize(collect(grounder, records, swaps, store.get, text_only=True))}
    if args.train:
        from grounding.eval.baselines import make_baseline

        train = read_annotations(args.train, format=args.format, durations=args.durations).records
        rows["moment prior"] = summarize(prior_outcomes(make_baseline("moment-prior").fit(train), records, swaps))
    header = f"  {'':<26}{'queries':>8}{'preference':>12}{'IoU S':>10}{'IoU S_':>10}"
    if ranks is not None:
        header += f"{'rank S':>10}{'rank S_':>10}{'drops':>8}"
    print("antonym benchmark (%; S = the sentence, S_ = its swap; ranks: the true video's mean rank)")
    print(header)
    for label, summary in rows.items():
        print(_row(label, summary["all"]))
    print("by swap kind (model):")
    for kind, figures in rows["model"]["by_kind"].items():
        print(_row(kind, figures))
    if args.json:
        write_json_atomic(args.json, {"annotations": args.annotations, "table": table, "swapped": len(swaps),
                                      "queries": len(records), "rows": rows})
        print(f"wrote {args.json}")
    return 0
