"""Save and load a model as a folder, the ``transformers`` way: ``config.json`` beside ``model.safetensors``.

A checkpoint folder::

    config.json          {"model_type": ..., "config": the model config, "metadata": {...}}
    model.safetensors    the weights (no pickle)

``metadata`` is free JSON kept with the weights (``grounding train`` stores there what turns videos and sentences
into model inputs: :class:`grounding.inference.PipelineInfo`); the model itself never reads it.

:func:`find_checkpoint` resolves what users pass: a checkpoint folder, or a ``grounding train`` run folder (its
``best``, else its ``last``; a folder interrupted mid-swap through its ``.old`` copy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from grounding.errors import ConfigError, InputError
from grounding.files import atomic_path, write_json_atomic

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)

ModelT = TypeVar("ModelT", bound="PretrainedModel")


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` names: a checkpoint itself, or a run folder (its ``best``, else ``last``).

    A folder interrupted mid-swap is found through its ``.old`` copy.

    Raises:
        InputError: nothing there holds a model.
    """
    folder = Path(path)
    candidates = [folder, folder.with_name(folder.name + ".old")]
    candidates += [folder / name for name in ("best", "last", "best.old", "last.old")]
    for candidate in candidates:
        if candidate.is_dir() and all((candidate / name).is_file() for name in MODEL_FILES):
            return candidate
    if not folder.exists():
        raise InputError(f"checkpoint '{folder}': no such folder; pass a run folder or its best/ or last/ folder")
    raise InputError(
        f"checkpoint '{folder}': no {' + '.join(MODEL_FILES)} there nor in its best/ or last/ folders; pass a folder "
        "written by 'grounding train' (or save_pretrained)"
    )


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata`` object of a checkpoint's ``config.json`` (``{}`` when it has none), without loading weights."""
    return dict(_read_config_payload(find_checkpoint(path), model_type=None).get("metadata") or {})


def _read_config_payload(source: Path, model_type: str | None) -> dict[str, Any]:
    config_path = source / CONFIG_FILE
    try:
        payload = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"checkpoint '{source}': {CONFIG_FILE} is not readable JSON ({error})") from None
    if not isinstance(payload, dict) or "config" not in payload or (
        model_type is not None and payload.get("model_type") != model_type
    ):
        raise InputError(f"checkpoint '{source}': {CONFIG_FILE} is not a '{model_type or 'grounding'}' model config")
    return payload


class PretrainedModel(nn.Module):
    """Base class of models that round-trip through a folder (:meth:`save_pretrained` / :meth:`from_pretrained`).

    A subclass sets ``config_class`` (with ``to_dict`` / ``from_dict``) and ``model_type``, takes its config as
    the only constructor argument and keeps it as ``self.config``. ``pretrained_metadata`` holds the metadata
    read with the weights.
    """

    config_class: ClassVar[Any]
    model_type: ClassVar[str]
    config: Any

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_metadata: dict[str, Any] = {}

    def save_pretrained(self, directory: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        """Write ``config.json`` (the config plus optional JSON ``metadata``) and ``model.safetensors`` into
        ``directory``, each through a temporary file and a rename (the weights first)."""
        target = Path(directory)
        payload = {"model_type": self.model_type, "config": self.config.to_dict(), "metadata": dict(metadata or {})}
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        with atomic_path(target / WEIGHTS_FILE) as temporary:
            save_file(state, str(temporary), metadata={"format": "pt", "model_type": self.model_type})
        write_json_atomic(target / CONFIG_FILE, payload)

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        directory: str | os.PathLike[str],
        map_location: str | torch.device = "cpu",
        config: Any = None,
    ) -> ModelT:
        """Rebuild a model saved by :meth:`save_pretrained`, in eval mode.

        Args:
            directory: the folder holding ``config.json`` and ``model.safetensors``, or a ``grounding train`` run
                folder (then its ``best``, else its ``last`` checkpoint).
            map_location: device for the weights (default CPU).
            config: build with this config instead of the saved one; the weights must fit it.

        Raises:
            InputError: a file is missing or unreadable.
            ConfigError: the weights do not match the config (names the first differing weight and shapes).
        """
        source = Path(directory)
        if not (source / CONFIG_FILE).is_file() and any((source / name).is_dir() for name in ("best", "last")):
            source = find_checkpoint(source)
        for name in MODEL_FILES:
            if not (source / name).is_file():
                raise InputError(f"checkpoint '{source}': {name} not found; save the model with save_pretrained")
        payload = _read_config_payload(source, cls.model_type)
        if config is None:
            config = cls.config_class.from_dict(payload["config"])
        model = cls(config)
        model.load_state_dict(_read_weights(source, model.state_dict(), str(map_location)), strict=True)
        model.pretrained_metadata = dict(payload.get("metadata") or {})
        return model.to(map_location).eval()


def _read_weights(source: Path, expected: Mapping[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    """The tensors of ``source``'s weights file, checked name by name and shape by shape against ``expected``."""
    try:
        with safe_open(str(source / WEIGHTS_FILE), framework="pt", device=device) as handle:
            names = set(handle.keys())
            unexpected = [name for name in sorted(names) if name not in expected]
            if unexpected:
                raise ConfigError(
                    f"checkpoint '{source}': weight '{unexpected[0]}' is not part of a model built from this config "
                    f"({len(unexpected)} such weights); the weights were saved with a different config — load them "
                    "with the config.json saved beside them"
                )
            missing = [name for name in expected if name not in names]
            if missing:
                raise ConfigError(
                    f"checkpoint '{source}': weight '{missing[0]}' (shape {tuple(expected[missing[0]].shape)}) is "
                    f"missing from {WEIGHTS_FILE} ({len(missing)} missing); the weights were saved with a different config"
                )
            state = {}
            for name, tensor in expected.items():  # model order: the first mismatch is the earliest layer's
                shape = tuple(handle.get_slice(name).get_shape())
                if shape != tuple(tensor.shape):
                    raise ConfigError(
                        f"checkpoint '{source}': weight '{name}' has shape {shape}, but the config builds "
                        f"{tuple(tensor.shape)}; load it with the config.json saved beside it"
                    )
                state[name] = handle.get_tensor(name)
    except ConfigError:
        raise
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise InputError(f"checkpoint '{source}': {WEIGHTS_FILE} is not readable ({error})") from None
    return state
