"""The trainer's AdamW: torch's update and state dict, without importing torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import torch

from grounding.training.optim import AdamW
from tests.training import single_thread  # noqa: F401 (single_thread: autouse)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))


def _groups(model: torch.nn.Module) -> list[dict]:
    return [
        {"params": [model[0].weight, model[2].weight], "weight_decay": 0.1},
        {"params": [model[0].bias, model[1].weight, model[1].bias, model[2].bias], "weight_decay": 0.0},
    ]


def _train(
    optimizer_class: type, steps: int, state: dict | None = None
) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    model = _model()
    optimizer = optimizer_class(_groups(model), lr=0.01, betas=(0.8, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    if state is not None:
        state = copy.deepcopy(state)  # load_state_dict adopts the tensors, and the steps update them in place
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    generator = torch.Generator().manual_seed(0 if state is None else 1)  # a resumed run sees new batches
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model(torch.randn(5, 3, generator=generator)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_updates_and_state_dict_match_torch_adamw_exactly() -> None:
    ours_model, ours, _ = _train(AdamW, 4)
    torch_model, theirs, _ = _train(torch.optim.AdamW, 4)
    for mine, reference in zip(ours_model.parameters(), torch_model.parameters()):
        assert torch.equal(mine, reference)
    mine_state, reference_state = ours.state_dict(), theirs.state_dict()
    assert mine_state["param_groups"] == reference_state["param_groups"]
    assert mine_state["state"].keys() == reference_state["state"].keys()
    for index, values in reference_state["state"].items():
        for name, tensor in values.items():
            assert torch.equal(mine_state["state"][index][name], tensor), (index, name)
    assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"] < 0.01  # the scheduler drove both


def test_loading_a_torch_adamw_state_continues_identically() -> None:
    model, theirs, scheduler = _train(torch.optim.AdamW, 2)
    state = {"model": model.state_dict(), "optimizer": theirs.state_dict(), "scheduler": scheduler.state_dict()}
    ours_model, _, _ = _train(AdamW, 3, state)
    torch_model, _, _ = _train(torch.optim.AdamW, 3, state)
    for mine, reference in zip(ours_model.parameters(), torch_model.parameters()):
        assert torch.equal(mine, reference)


def test_step_updates_without_recording_and_runs_hooks() -> None:
    model = _model()
    optimizer = AdamW(model.parameters(), lr=0.1)
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    model(torch.randn(2, 3)).sum().backward()
    before = model[0].weight.detach().clone()
    optimizer.step()
    assert calls == ["pre", "post"] and torch.is_grad_enabled()
    assert not torch.equal(model[0].weight, before) and model[0].weight.grad_fn is None
    assert optimizer.step(closure=lambda: 3.5) == 3.5


def test_a_training_step_does_not_import_dynamo() -> None:
    script = textwrap.dedent(
        """
        import sys, torch
        from grounding.training.optim import AdamW
        model = torch.nn.Linear(3, 2)
        optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        optimizer.zero_grad(set_to_none=True)
        model(torch.randn(4, 3)).sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step(); scheduler.step()
        optimizer.load_state_dict(optimizer.state_dict())
        print("torch._dynamo" in sys.modules)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False", completed.stderr
