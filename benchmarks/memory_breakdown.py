"""What a CPU training step's peak memory is made of, per model preset, on random inputs of the real shapes.

For each preset, in a fresh subprocess (so the process's peak is the measurement's own), with the model, inputs
and AdamW step of ``bench_model.build_step`` (``benchmarks/bench_model.py``):

- ``torch``: resident memory (``VmRSS``) after ``import torch``;
- ``package``: the rise after ``import grounding.model``;
- ``weights+grads+adamw``: bytes of the parameters, their gradients and AdamW's two moments (4 x parameters);
- ``saved for backward``: bytes of the distinct tensor storages autograd keeps for backward in one forward pass
  and loss (``torch.autograd.graph.saved_tensors_hooks``; a storage shared by several saved tensors counts once,
  parameters and the sparse candidate maps, constant buffers, excluded);
- ``peak after build`` and ``peak after step 1..N``: the process's peak resident memory (``VmHWM``) after the model
  and inputs are built and after each training step. AdamW allocates its moments at the end of the first step,
  so they count from step 2 on.

The difference between the last peak and the sum of the parts is memory the C allocator keeps after tensors are
freed (glibc's malloc; ``--allocator tcmalloc`` preloads tcmalloc instead, as ``bench_model.py`` does).

Usage::

    python benchmarks/memory_breakdown.py                                   # charades-sta, charades-sta-32, activitynet
    python benchmarks/memory_breakdown.py --presets charades-sta --batch-size 4 --steps 2   # a quick check
    python benchmarks/memory_breakdown.py --allocator tcmalloc --json memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from procfs import status_kb  # benchmarks/procfs.py; this folder is on sys.path when a benchmark runs

HERE = Path(__file__).resolve().parent
GB = 1e9


def run_worker(preset: str, batch_size: int, steps: int) -> dict[str, Any]:
    """Measure one preset in this process (call it in a fresh one); figures in GB."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    after_torch = status_kb("VmRSS") * 1e3
    import grounding.model  # noqa: F401  (what the rise after it measures)

    after_package = status_kb("VmRSS") * 1e3
    sys.path.insert(0, str(HERE))
    import bench_model

    from grounding.model import GroundingConfig, GroundingModel, compute_loss

    step, config = bench_model.build_step(preset, "train", batch_size)
    peak_after_build = status_kb("VmHWM") * 1e3
    peaks = []
    for _ in range(steps):
        step()
        peaks.append(status_kb("VmHWM") * 1e3)

    # Saved activations: a separate model of the same preset, one forward pass and loss, no backward.
    model = GroundingModel(GroundingConfig.preset(preset)).train()
    parameters = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.layout != torch.strided:  # the sparse candidate maps: constant buffers of the model
            return tensor
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and storage.device.type != "meta":
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs = bench_model.random_inputs(config, batch_size)
    targets = torch.tensor([[5.0, 12.0]]).repeat(batch_size, 1)
    durations = torch.full((batch_size,), 30.0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        compute_loss(model(*inputs), targets, durations, config.loss)
    parameter_bytes = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    return {
        "preset": preset,
        "batch_size": batch_size,
        "allocator": bench_model.loaded_allocator(),
        "torch": after_torch / GB,
        "package": (after_package - after_torch) / GB,
        "weights+grads+adamw": 4 * parameter_bytes / GB,
        "saved for backward": sum(storages.values()) / GB,
        "peak after build": peak_after_build / GB,
        "peak after steps": [peak / GB for peak in peaks],
    }


def measure(preset: str, batch_size: int, steps: int, threads: int, allocator: str) -> dict[str, Any]:
    """``run_worker`` in a fresh subprocess (with ``allocator`` preloaded unless it is ``glibc``)."""
    sys.path.insert(0, str(HERE))
    import bench_model

    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if allocator != "glibc":
        environment["LD_PRELOAD"] = bench_model.allocator_library(allocator)
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import memory_breakdown; "
        f"print(json.dumps(memory_breakdown.run_worker({preset!r}, {batch_size}, {steps})))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                               check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{preset}: the worker failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["charades-sta", "charades-sta-32", "activitynet"],
                        help="GroundingConfig presets to measure (default: the three of docs/model.md)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch (default 32)")
    parser.add_argument("--steps", type=int, default=3, help="training steps after which the peak is read (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the worker (default 2)")
    parser.add_argument("--allocator", default="glibc", choices=["glibc", "tcmalloc", "jemalloc"],
                        help="C allocator of the worker (default glibc: none preloaded)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    rows = [measure(preset, args.batch_size, args.steps, args.threads, args.allocator) for preset in args.presets]
    step_columns = " | ".join(f"peak after step {i + 1}" for i in range(args.steps))
    print(f"| preset (batch {args.batch_size}, {rows[0]['allocator']}) | torch | package | weights+grads+adamw | "
          f"saved for backward | peak after build | {step_columns} |")
    print("|---" * (6 + args.steps) + "|")
    for row in rows:
        steps = " | ".join(f"{peak:.3f}" for peak in row["peak after steps"])
        print(f"| {row['preset']} | {row['torch']:.3f} | {row['package']:.3f} | {row['weights+grads+adamw']:.3f} | "
              f"{row['saved for backward']:.3f} | {row['peak after build']:.3f} | {steps} |")
    print("(GB; peaks are the process's VmHWM)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
