"""Seeds, determinism, the learning-rate schedule and AdamW's parameter groups: the trainer's fixed settings.

- :func:`seed_everything`: Python, numpy and torch from ``train.seed``.
- :func:`deterministic_mode`: deterministic kernels (warn-only) and no cuDNN autotuning, restored on exit.
- :func:`lr_multiplier`: warm-up, then a cosine, step or constant schedule, as ``step -> lr / train.lr``.
- :func:`parameter_groups`: weight decay on matrices and kernels only.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from grounding.training.config import TrainConfig


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _use_deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, without the import of ``torch._inductor`` (and with it
    ``torch._dynamo``, with their memory and start-up time) that it makes to set inductor's flag too. That flag only concerns
    compiled graphs, which the trainer never builds, so it is left alone unless something has loaded inductor."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` (warn-only) and no cuDNN autotuning, restored on exit."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    previous_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        _use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        _use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous_cudnn


def lr_multiplier(train: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """``step -> lr / train.lr`` for the configured warm-up and schedule (``step`` = optimiser steps taken).

    - warm-up: linear from ``warmup_start_factor`` to 1 over ``round(warmup_epochs * steps_per_epoch)`` steps;
    - ``cosine``: from 1 down to ``min_lr_ratio`` at the last step;
    - ``step``: ``step_gamma ** (epoch // step_size)`` with ``epoch = step // steps_per_epoch`` (0-based);
    - ``constant``: 1.
    """
    warmup_steps = int(round(train.warmup_epochs * steps_per_epoch))
    total_steps = train.epochs * steps_per_epoch

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return train.warmup_start_factor + (1.0 - train.warmup_start_factor) * step / warmup_steps
        if train.schedule == "constant":
            return 1.0
        if train.schedule == "step":
            return train.step_gamma ** ((step // steps_per_epoch) // train.step_size)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return train.min_lr_ratio + (1.0 - train.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices and kernels, none on biases, norms and other vectors."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


