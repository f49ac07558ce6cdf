"""Checkpoints without pickle: model weights and training state in safetensors, everything else in JSON.

A checkpoint folder (``<run>/last`` or ``<run>/best``)::

    config.json               the model's GroundingConfig, plus metadata["pipeline"]: what inference needs
                              besides the model (text encoder, frame backbone and its extraction settings,
                              NMS; :class:`~grounding.inference.PipelineInfo`)   } GroundingModel.save_pretrained
    model.safetensors         the model's weights                    }
    training_state.safetensors  optimizer moments, RNG states            } ``last`` only: what --resume needs
    training_state.json         epoch, step, best metric, scheduler, ...  }
    metrics.json              the evaluation that made this checkpoint

Tensors of the optimizer/scheduler/scaler state dicts go to the safetensors file under their path in the state
dict (``optimizer/state/3/exp_avg``); the rest of the structure goes to JSON with a reference to each tensor, so
loading rebuilds the exact state dict (int keys and tuples included) without unpickling anything.

A folder is written under a temporary name and renamed into place; the previous version is removed only
after the new one is complete, so a kill at any moment leaves a complete ``last`` (or its ``.old`` copy,
which :func:`grounding.model.find_checkpoint` falls back to).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from grounding.errors import ConfigError, InputError
from grounding.files import atomic_path, write_text_atomic

STATE_TENSORS_FILE = "training_state.safetensors"
STATE_JSON_FILE = "training_state.json"
METRICS_FILE = "metrics.json"
STATE_FORMAT_VERSION = 1


# --- state dicts <-> (tensors, JSON) ---------------------------------------------------------------------------
def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready structure for ``value``; tensors (and numpy arrays) are moved into ``tensors`` by path."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        stored_dtype = np.int64 if value.dtype.kind in "ui" else value.dtype  # e.g. numpy's uint32 RNG keys
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value).astype(stored_dtype))
        return {"__ndarray__": path, "dtype": str(value.dtype)}
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (np.integer, np.floating)):
        return _encode(value.item(), path, tensors)
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: _encode(item, f"{path}/{key}", tensors) for key, item in value.items()}
        return {"__items__": [[_encode(key, f"{path}/k{i}", tensors), _encode(item, f"{path}/{key}", tensors)]
                              for i, (key, item) in enumerate(value.items())]}
    raise ConfigError(f"cannot save {type(value).__name__} at '{path}' in a checkpoint (no pickle is used)")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor], source: str) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors, source) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value or "__ndarray__" in value:
        key = value.get("__tensor__", value.get("__ndarray__"))
        if key not in tensors:
            raise InputError(
                f"{source}: tensor '{key}' is missing from {STATE_TENSORS_FILE}; the checkpoint is damaged"
            )
        tensor = tensors[key]
        return tensor.numpy().astype(value["dtype"]) if "__ndarray__" in value else tensor
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_decode(item, tensors, source) for item in value["__tuple__"])
    if "__items__" in value:
        return {_decode(key, tensors, source): _decode(item, tensors, source) for key, item in value["__items__"]}
    return {key: _decode(item, tensors, source) for key, item in value.items()}


def rng_state() -> dict[str, Any]:
    """The random states of torch (CPU and every CUDA device), numpy and Python."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state` (CUDA states only when this machine has as many devices)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda_states = state.get("cuda")
    if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def save_training_state(directory: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write a training-state mapping (state dicts, counters, RNG) as safetensors + JSON into ``directory``."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(dict(state), "state", tensors)
    with atomic_path(folder / STATE_TENSORS_FILE) as temporary:
        save_file(tensors, str(temporary))
    payload = {"format_version": STATE_FORMAT_VERSION, "state": encoded}
    write_text_atomic(folder / STATE_JSON_FILE, json.dumps(payload, indent=1) + "\n")


def load_training_state(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read what :func:`save_training_state` wrote (no unpickling).

    Raises:
        InputError: the files are missing or do not match each other.
    """
    folder = Path(directory)
    json_path, tensor_path = folder / STATE_JSON_FILE, folder / STATE_TENSORS_FILE
    if not json_path.is_file() or not tensor_path.is_file():
        raise InputError(
            f"{folder}: no training state ({STATE_JSON_FILE} + {STATE_TENSORS_FILE}); only a run's 'last' checkpoint "
            "can be resumed"
        )
    try:
        payload = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{json_path}: not valid JSON ({error}); the checkpoint is damaged") from None
    if payload.get("format_version") != STATE_FORMAT_VERSION:
        raise InputError(
            f"{json_path}: format_version {payload.get('format_version')!r}, expected {STATE_FORMAT_VERSION}"
        )
    tensors = load_file(str(tensor_path))
    return _decode(payload["state"], tensors, str(folder))


# --- folders -----------------------------------------------------------------------------------------------------
def replace_directory(staged: Path, target: Path) -> None:
    """Move the complete folder ``staged`` to ``target``, replacing an older ``target`` without a gap in which
    neither exists (the old one is first renamed to ``<target>.old``, removed after the swap)."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    if old.exists():
        shutil.rmtree(old)


def staging_directory(target: Path) -> Path:
    """A fresh, empty ``.<name>.tmp`` folder beside ``target`` to write a checkpoint into."""
    staged = target.with_name(f".{target.name}.tmp")
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    return staged


def write_json(path: Path, payload: Any) -> None:
    """Write JSON (one-space indent, as run folders have always had) through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")
