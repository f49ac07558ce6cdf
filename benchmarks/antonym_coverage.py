"""How many queries of a benchmark's split get an antonym swap (grounding.text.antonyms), in all and by kind.

    python benchmarks/antonym_coverage.py --table english \\
        --annotations $DATA/charades_sta/charades_sta_test.txt --durations $DATA/charades_sta/Charades_v1_test.csv
    python benchmarks/antonym_coverage.py --table english --annotations $DATA/activitynet_captions/test.json
    python benchmarks/antonym_coverage.py --table rendered-world --annotations worlds/w1000/test.txt \\
        --durations worlds/w1000/durations.csv

Prints one JSON object: ``queries``, ``swapped`` (and in %), ``by_kind`` (queries whose swaps are all of one kind;
``mixed`` otherwise) and three examples.
"""

from __future__ import annotations

import argparse
import collections
import json
from typing import Sequence

from grounding.data.annotations import read_annotations
from grounding.text.antonyms import TABLES, swap_antonyms


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True, help="annotation file (any format grounding reads)")
    parser.add_argument("--durations", nargs="*", default=[], help="durations CSV(s), for Charades-STA lines")
    parser.add_argument("--table", choices=sorted(TABLES), required=True, help="which swap table")
    args = parser.parse_args(argv)
    records = read_annotations(args.annotations, durations=args.durations).records
    kinds: collections.Counter[str] = collections.Counter()
    examples = []
    for record in records:
        swap = swap_antonyms(record.sentence, TABLES[args.table])
        if swap is not None:
            kinds[swap.kind] += 1
            if len(examples) < 3:
                examples.append([record.sentence, swap.sentence])
    swapped = sum(kinds.values())
    print(json.dumps({
        "annotations": args.annotations, "table": args.table, "queries": len(records), "swapped": swapped,
        "swapped_percent": round(100.0 * swapped / max(len(records), 1), 2),
        "by_kind": dict(kinds.most_common()), "examples": examples,
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
