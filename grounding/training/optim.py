"""The trainer's optimiser: torch's AdamW without the ``torch._dynamo`` import.

``torch.optim.Optimizer`` wraps ``add_param_group``, ``zero_grad``, ``state_dict``, ``load_state_dict`` and
``step`` so that ``torch.compile`` leaves them alone; the wrappers import ``torch._dynamo`` (and with it sympy and
the FX machinery) on their first call: memory and start-up time in every process, for a model that is never
compiled. :class:`AdamW`
calls the undecorated methods instead; the update, the parameter groups and the state dict are torch's own
(``tests/training/test_optim.py`` checks it step for step against ``torch.optim.AdamW``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

import torch

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _eager(method: _Function) -> _Function:
    """``method`` without its wrappers (``functools.wraps`` keeps each wrapped function in ``__wrapped__``): the
    compile guards, and for ``step`` also the profiling hooks that ``Optimizer`` adds to a class on first use,
    which :class:`AdamW`'s own ``step`` gets instead. The method itself where a torch version does not wrap it."""
    return inspect.unwrap(method)


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` (same arguments, update and state dict) that never imports ``torch._dynamo``.

    Not meant for ``torch.compile``: use ``torch.optim.AdamW`` there.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _eager(torch.optim.Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _eager(torch.optim.Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _eager(torch.optim.Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _eager(torch.optim.Optimizer.load_state_dict)(self, state_dict)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        # the wrapper being skipped also switches gradients off for the update (``differentiable`` is False)
        with torch.no_grad():
            return _eager(torch.optim.AdamW.step)(self, closure)
