"""Cost of the text encoder: milliseconds per query at batch 1 and batch 32.

    python benchmarks/bench_text.py                       # minilm-l6 on CPU
    python benchmarks/bench_text.py --device cuda --encoder minilm-l6 --repeats 50

Times ``encode`` (tokenise + transformer + language graph, frozen, no_grad) and, for training, an
``encode_cached`` call whose sentences are all cached. The sentences are made up here (Charades-STA-like length,
8-12 words), never read from the annotation files. Prints one line per measurement: the median over
``--repeats`` timed calls after ``--warmup`` untimed ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from grounding.text import create_text_encoder

SUBJECTS = ["a person", "the man", "a woman", "someone", "the child"]
ACTIONS = ["opens the refrigerator door", "sits down on a chair", "takes a book from the shelf",
           "is laughing at the phone", "puts the dishes in the sink", "walks through the doorway"]
ENDINGS = [".", " in the kitchen.", " then turns off the light.", " while holding a cup of coffee."]


def make_sentences(count: int) -> list[str]:
    """Deterministic Charades-like queries, all distinct."""
    sentences = []
    for index in range(count):
        subject = SUBJECTS[index % len(SUBJECTS)]
        action = ACTIONS[(index // len(SUBJECTS)) % len(ACTIONS)]
        ending = ENDINGS[(index // (len(SUBJECTS) * len(ACTIONS))) % len(ENDINGS)]
        sentences.append(f"{subject} {action}{ending}")
    return sentences


def median_ms(call, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="minilm-l6", help="text encoder name (default: minilm-l6)")
    parser.add_argument("--device", default="cpu", help="device to run the encoder on (default: cpu)")
    parser.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes (default: 1,32)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    parser.add_argument("--syntax", default="sequential", choices=["auto", "dependency", "sequential"],
                        help="language-graph edges (default: sequential, so spaCy's cost is not mixed in)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    encoder = create_text_encoder(args.encoder, syntax=args.syntax).to(device)
    print(f"encoder={encoder.name} dim={encoder.dim} device={device} torch_threads={torch.get_num_threads()} "
          f"torch={torch.__version__}")
    for batch_size in [int(size) for size in args.batch_sizes.split(",")]:
        sentences = make_sentences(batch_size)
        encode_ms = median_ms(lambda: encoder.encode(sentences), args.repeats, args.warmup, device)
        encoder.encode_cached(sentences)
        cached_ms = median_ms(lambda: encoder.encode_cached(sentences), args.repeats, args.warmup, device)
        print(f"batch={batch_size:3d}  encode: {encode_ms:8.2f} ms/batch {encode_ms / batch_size:7.2f} ms/query   "
              f"encode_cached (all hits): {cached_ms:7.2f} ms/batch {cached_ms / batch_size:6.3f} ms/query")
    return 0


if __name__ == "__main__":
    sys.exit(main())
