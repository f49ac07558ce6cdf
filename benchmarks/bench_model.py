"""Speed and memory of GroundingModel against the official VLG-Net, on random inputs of the real shapes.

For each configuration (Charades-STA with 16 and 32 clips, ActivityNet Captions, TACoS; VLG-Net's published
settings via ``GroundingConfig.preset``) it measures, each in a fresh subprocess so that peak memory is
the measurement's own:

- inference ms per query at batch 1 and batch 32 (``torch.inference_mode``, median of several runs),
- one training step (forward, loss, backward, AdamW step) at batch 32 (batch 8 for TACoS), median,
- peak resident memory of the process (``VmHWM``), and its rise above the RSS after ``import torch``
  and the model package (the baseline).

Queries have 10 words with chain language-graph edges; every clip is real. Times use
``torch.set_num_threads(2)``, like the reference figures, which were measured for the official code
(commit c14940a) on the same kind of machine.

The machine is shared. With OpenMP's default (spinning) wait policy, a 2-thread process on a 2-core machine
that other processes keep busy waits a scheduler tick (~20 ms) at many parallel regions: TACoS at batch 1
then takes ~2.9 s instead of ~75 ms, for this model and any other. ``--omp-wait-policy PASSIVE`` avoids those
stalls on a busy machine (at the price of a futex wake-up per parallel region, which slows the small
configurations); the default leaves the environment alone. The load average is printed with the results.

Peak memory depends on the C allocator as much as on the model: glibc's malloc keeps freed blocks of up to
32 MB for reuse and the heap fragments across steps. ``--allocator tcmalloc`` (or ``jemalloc``) preloads that
library into the workers (``LD_PRELOAD``; Debian/Ubuntu: ``apt install libtcmalloc-minimal4``); each worker reports
the allocator it actually ran with. The reference figures were measured with glibc's.

``build_step`` (the model, its inputs and one step) and ``time_in_process`` (in-process timing, CUDA-aware) are
also what ``benchmarks/gpu_check.py`` times on a GPU.

Usage::

    python benchmarks/bench_model.py                       # all configurations (several minutes)
    python benchmarks/bench_model.py --configs tacos --json bench_model.json
    python benchmarks/bench_model.py --allocator tcmalloc  # the same with tcmalloc preloaded
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from procfs import status_kb  # benchmarks/procfs.py; this folder is on sys.path when a benchmark runs

NUM_WORDS = 10


@dataclass(frozen=True)
class BenchConfig:
    """One row of the comparison: a model preset, its training batch, and VLG-Net's measured figures."""

    preset: str
    label: str
    train_batch: int
    ref_batch1_ms: float
    ref_batch32_ms: float
    ref_train_s: float
    ref_memory: dict[str, float]  # measurement name -> GB


CONFIGS = (
    BenchConfig("charades-sta", "Charades-like (16 clips, 1024-d)", 32, 32.0, 12.7, 0.91, {"train": 0.9}),
    BenchConfig("charades-sta-32", "Charades-like (32 clips, 1024-d)", 32, 32.0, 17.9, 1.62, {"train": 1.2}),
    BenchConfig("activitynet", "ActivityNet (64 clips, 500-d)", 32, 65.0, 57.7, 5.98, {"train": 2.2}),
    BenchConfig("tacos", "TACoS (256 clips, 4096-d)", 8, 1380.0, 1602.0, 24.8, {"infer-32": 13.1, "train": 6.4}),
)
MEASUREMENTS = ("infer-1", "infer-32", "train")
ALLOCATORS = {  # --allocator name -> the shared library (a name the dynamic loader finds) and its Debian package
    "tcmalloc": ("tcmalloc_minimal", "libtcmalloc-minimal4"),
    "jemalloc": ("jemalloc", "libjemalloc2"),
}


def allocator_library(name: str) -> str:
    """The file name of the ``--allocator`` library to preload; :class:`SystemExit` with the install hint when the
    dynamic loader does not find it."""
    import ctypes.util

    library, package = ALLOCATORS[name]
    found = ctypes.util.find_library(library)
    if found is None:
        raise SystemExit(
            f"--allocator {name}: lib{library}.so is not installed (Debian/Ubuntu: apt install {package}); "
            "or leave --allocator at 'default'"
        )
    return found


def loaded_allocator() -> str:
    """The allocator this process runs with: an ``--allocator`` name found among its mapped libraries, or glibc."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as handle:
        maps = handle.read()
    return next((name for name, (library, _) in ALLOCATORS.items() if f"lib{library}" in maps), "glibc")


def random_inputs(config: Any, batch_size: int, generator: Any = None) -> tuple[Any, ...]:
    """The model's positional inputs for ``batch_size`` random videos of ``config.num_clips`` real clips and
    queries of ``NUM_WORDS`` words with chain edges, on the CPU: ``(clip_feats, clip_mask, word_feats, word_mask,
    word_edges)``."""
    import torch

    from grounding.text.language_graph import batch_edge_index, sequential_edges

    clip_feats = torch.randn(batch_size, config.num_clips, config.input_dim, generator=generator)
    word_feats = torch.randn(batch_size, NUM_WORDS, config.text.input_dim, generator=generator)
    return (
        clip_feats,
        torch.ones(batch_size, config.num_clips, dtype=torch.bool),
        word_feats,
        torch.ones(batch_size, NUM_WORDS, dtype=torch.bool),
        batch_edge_index([sequential_edges(NUM_WORDS)] * batch_size, NUM_WORDS),
    )


def build_step(preset: str, measurement: str, batch_size: int, device: str = "cpu", amp: str = "none"):
    """The model of ``preset`` with random inputs of its real shapes, and one step of ``measurement``.

    ``measurement`` is ``train`` (forward, loss, backward, AdamW step) or ``infer-*`` (a forward pass under
    ``torch.inference_mode``). ``amp`` (``none``, ``bf16``, ``fp16``) runs the forward pass under
    ``torch.autocast`` on CUDA, as ``train.amp`` does; fp16 training scales the loss like the trainer.

    Returns:
        ``(step, config)``: ``step()`` runs one step; ``config`` is the preset's GroundingConfig.
    """
    import torch

    from grounding.model import GroundingConfig, GroundingModel, compute_loss
    from grounding.training.optim import AdamW

    config = GroundingConfig.preset(preset)
    model = GroundingModel(config).to(device)
    inputs = tuple(tensor.to(device) for tensor in random_inputs(config, batch_size))
    durations = torch.full((batch_size,), 30.0, device=device)
    starts = torch.rand(batch_size, device=device) * 20.0
    targets = torch.stack([starts, starts + 2.0 + torch.rand(batch_size, device=device) * 8.0], dim=1)
    use_amp = amp != "none" and torch.device(device).type == "cuda"
    precision = torch.bfloat16 if amp == "bf16" else torch.float16

    def autocast():
        return torch.autocast(device_type="cuda", dtype=precision, enabled=use_amp)

    if measurement == "train":
        model.train()
        optimizer = AdamW(model.parameters(), lr=1e-4)  # the trainer's (torch's, minus the torch._dynamo import)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp == "fp16")

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss, _ = compute_loss(model(*inputs), targets, durations, config.loss)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode(), autocast():
                model(*inputs)

    return step, config


def batch_size_of(preset: str, measurement: str) -> int:
    bench = next(item for item in CONFIGS if item.preset == preset)
    return {"infer-1": 1, "infer-32": 32, "train": bench.train_batch}[measurement]


def run_worker(preset: str, measurement: str, threads: int, repeats: int | None) -> dict[str, float]:
    """Run one CPU measurement in this process and return its figures."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    baseline_kb = status_kb("VmRSS")
    batch_size = batch_size_of(preset, measurement)
    step, config = build_step(preset, measurement, batch_size)
    if repeats is None:
        heavy = config.num_clips >= 128
        repeats = {"infer-1": 5 if heavy else 30, "infer-32": 3 if heavy else 10, "train": 3 if heavy else 5}[measurement]

    step()  # warm-up: allocator, oneDNN primitives
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak_kb = status_kb("VmHWM")
    result = {
        "batch_size": batch_size,
        "repeats": repeats,
        "median_s": median,
        "min_s": min(times),
        "peak_rss_gb": peak_kb / 2**20,
        "peak_rise_gb": (peak_kb - baseline_kb) / 2**20,
        "allocator": loaded_allocator(),
    }
    if measurement != "train":
        result["ms_per_query"] = median * 1000.0 / batch_size
    return result


def time_in_process(
    preset: str, measurement: str, batch_size: int, device: str = "cuda", amp: str = "none", repeats: int = 20
) -> dict[str, float | None]:
    """One measurement on ``device`` in this process: median step time (synchronised on CUDA) and, on CUDA, the
    peak of ``torch.cuda.max_memory_allocated`` over the steps in GB (weights and inputs included)."""
    import torch

    on_cuda = torch.device(device).type == "cuda"
    torch.manual_seed(0)
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step, _ = build_step(preset, measurement, batch_size, device=device, amp=amp)

    def synchronize() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    for _ in range(3):  # warm-up: kernels, cuBLAS handles, the allocator's pool
        step()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result: dict[str, float | None] = {
        "batch_size": batch_size,
        "repeats": repeats,
        "median_s": median,
        "min_s": min(times),
        "peak_cuda_gb": torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None,
    }
    if measurement != "train":
        result["ms_per_query"] = median * 1000.0 / batch_size
    return result


def measure(
    preset: str,
    measurement: str,
    threads: int,
    repeats: int | None,
    wait_policy: str,
    mmap_threshold: int | None = None,
    allocator: str = "default",
) -> dict[str, float]:
    """Run one measurement in a fresh subprocess (so its peak memory is its own)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", preset, measurement, "--threads", str(threads)]
    if repeats is not None:
        command += ["--repeats", str(repeats)]
    environment = dict(os.environ)
    if wait_policy != "default":
        environment["OMP_WAIT_POLICY"] = wait_policy
    if mmap_threshold is not None:
        environment["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    if allocator != "default":
        environment["LD_PRELOAD"] = " ".join(filter(None, [allocator_library(allocator), environment.get("LD_PRELOAD")]))
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if completed.returncode != 0:
        raise RuntimeError(f"{preset} {measurement} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _ratio(reference: float, ours: float) -> str:
    return f"{reference / ours:.1f}x" if ours > 0 else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--configs", default=",".join(item.preset for item in CONFIGS), help="comma-separated presets")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as the reference)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default: by size)")
    parser.add_argument(
        "--omp-wait-policy",
        default="default",
        choices=("PASSIVE", "ACTIVE", "default"),
        help="OMP_WAIT_POLICY of the workers ('default' leaves the environment alone; PASSIVE for a busy machine)",
    )
    parser.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=None,
        metavar="BYTES",
        help="glibc's MALLOC_MMAP_THRESHOLD_ for the workers: blocks this large or larger go back to the system "
        "when freed (lower peak memory, slower steps); default: glibc's own, which keeps freed blocks up to 32 MB",
    )
    parser.add_argument(
        "--allocator",
        default="default",
        choices=("default", *ALLOCATORS),
        help="C allocator of the workers: 'default' (glibc's malloc, as the reference figures) or a library to "
        "preload with LD_PRELOAD (tcmalloc: apt install libtcmalloc-minimal4; jemalloc: apt install libjemalloc2)",
    )
    parser.add_argument("--json", default=None, help="also write all figures to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("PRESET", "MEASUREMENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args.worker[0], args.worker[1], args.threads, args.repeats)))
        return 0

    wanted = args.configs.split(",")
    unknown = sorted(set(wanted) - {item.preset for item in CONFIGS})
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {[item.preset for item in CONFIGS]}")
    if args.allocator != "default":
        allocator_library(args.allocator)  # fail before the first measurement when it is missing
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    for bench in CONFIGS:
        if bench.preset not in wanted:
            continue
        results[bench.preset] = {}
        for measurement in MEASUREMENTS:
            print(f"{bench.preset} {measurement} ...", file=sys.stderr, flush=True)
            results[bench.preset][measurement] = measure(
                bench.preset, measurement, args.threads, args.repeats, args.omp_wait_policy, args.malloc_mmap_threshold,
                args.allocator,
            )

    header = (
        f"{'config':34} | {'batch 1 ms/query':>24} | {'batch 32 ms/query':>24} | {'train step (batch)':>26} | peak memory GB (ours: RSS / rise)"
    )
    print(header)
    print("-" * len(header))
    for bench in CONFIGS:
        if bench.preset not in results:
            continue
        figures = results[bench.preset]
        one, many, train = figures["infer-1"], figures["infer-32"], figures["train"]
        memory = "; ".join(
            f"{name} ref {ref_gb:.1f} vs {figures[name]['peak_rss_gb']:.2f} / {figures[name]['peak_rise_gb']:.2f}"
            for name, ref_gb in bench.ref_memory.items()
        )
        others = "; ".join(
            f"{name} {figures[name]['peak_rss_gb']:.2f} / {figures[name]['peak_rise_gb']:.2f}"
            for name in MEASUREMENTS
            if name not in bench.ref_memory
        )
        print(
            f"{bench.label:34} | "
            f"{bench.ref_batch1_ms:7.1f} -> {one['ms_per_query']:6.1f} ({_ratio(bench.ref_batch1_ms, one['ms_per_query']):>6}) | "
            f"{bench.ref_batch32_ms:7.1f} -> {many['ms_per_query']:6.1f} ({_ratio(bench.ref_batch32_ms, many['ms_per_query']):>6}) | "
            f"{bench.ref_train_s:5.2f} -> {train['median_s']:5.2f} s ({_ratio(bench.ref_train_s, train['median_s']):>6}, b{train['batch_size']:.0f}) | "
            f"{memory}; {others}"
        )
    allocators = sorted({figures["allocator"] for row in results.values() for figures in row.values()})
    print(
        f"threads {args.threads}; OMP_WAIT_POLICY {args.omp_wait_policy}; MALLOC_MMAP_THRESHOLD_ "
        f"{args.malloc_mmap_threshold or 'default'}; allocator {', '.join(allocators)}; "
        f"load average after: {os.getloadavg()}"
    )
    if args.json:
        with open(args.json + ".tmp", "w", encoding="utf-8") as handle:
            json.dump({"threads": args.threads, "omp_wait_policy": args.omp_wait_policy,
                       "malloc_mmap_threshold": args.malloc_mmap_threshold, "allocator": args.allocator,
                       "results": results}, handle, indent=2)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
