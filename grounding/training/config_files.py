"""The experiment config as a tree of YAML values: reading files, ``base:`` files, ``key=value`` overrides, merging,
known-key checks with did-you-mean, old key names, and writing the tree back as YAML.

Nothing here knows the dataclasses: the tree of known keys is passed in (``defaults``, the dataclasses' defaults
as nested dicts, from :func:`grounding.training.config.default_tree`), and :mod:`grounding.training.config` turns
the merged tree into checked dataclasses.

- Mappings merge key by key; any other value (lists included) replaces the previous one.
- An *open* mapping (:data:`OPEN_MAPPINGS`, e.g. ``data.extra_eval``) has free keys (split names): ``name: null``
  removes one entry and ``{}`` clears it.
- An old key name (:data:`RENAMED_KEYS`, e.g. ``data.backbone`` -> ``data.extraction.backbone``) is moved to its
  new place in every file, override and dict, so old configs and old run folders' ``config.yaml`` still load.
- ``1e-3`` (no dot) is a float, as YAML 1.2 reads it (PyYAML follows YAML 1.1, which makes it a string).

Why not OmegaConf: a trial port of ``read_yaml``, ``merge_trees`` and ``overrides_tree`` to omegaconf 2.4.0 gave
the same trees (but for one override case) but shortened only those functions, a little, and left ``grounding/training/config.py`` as it is.
The rest stays ours either way: it has no ``base:`` files
(Hydra's defaults lists do that); its struct mode refuses an unknown key with ``Key 'lrr' is not in struct. Did
you mean: 'lr'?``, without the dotted key, the file or override, or our aliases (``learning_rate`` -> ``lr``), so
the known-key check stays; its merge keeps ``name: null`` in an open mapping instead of removing it and ignores
``{}``, so a pre-pass stays; it reads ``train.lr`` (no ``=``) as ``lr: None`` and ``train..lr=1`` as a key ``''``,
so the override checks stay; PyYAML's errors pass through it and still need the ``file:line`` wording;
``model.span.pooling_counts=[15, 8`` raises its parser error where ours keeps the string for the dataclass check
to name the key. Its structured configs check types with their own messages (``Value 'two' ... could not be
converted to Integer``, not ``train.epochs must be an integer, got 'two'``) and skip ``__post_init__``. About 24
lines do not pay for a dependency.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from grounding.checks import closest
from grounding.errors import ConfigError, InputError

# Mappings whose keys are free (split names), not config keys.
OPEN_MAPPINGS = frozenset({"data.extra_eval"})
# Old dotted key -> its key now. The extraction settings moved from five flat ``data`` keys to ``data.extraction``.
RENAMED_KEYS = {
    f"data.{name}": f"data.extraction.{name}"
    for name in ("backbone", "clip_seconds", "frames_per_clip", "frame_size", "resize")
}
# Names other trainers use for our keys, tried before fuzzy matching so the suggestion is the right key.
_ALIASES = {
    "learning_rate": "lr", "base_lr": "lr", "max_epoch": "epochs", "max_epochs": "epochs", "num_epochs": "epochs",
    "wd": "weight_decay", "bs": "batch_size", "nms_thresh": "nms", "nms_threshold": "nms", "clip_grad": "grad_clip",
    "workers": "num_workers", "out_dir": "output_dir",
}


# --- YAML ---------------------------------------------------------------------------------------------------------
class _YAMLLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float; YAML 1.1 would make it a string."""


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml_value(text: str) -> Any:
    """A scalar or small structure written as YAML (``"3e-4"`` -> 0.0003, ``"null"`` -> None, ``"[1,2]"``)."""
    try:
        return yaml.load(text, Loader=_YAMLLoader) if text.strip() else ""
    except yaml.YAMLError:
        return text


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One YAML file as a mapping (an empty file is ``{}``)."""
    file_path = Path(path)
    if not file_path.is_file():
        raise InputError(f"{file_path}: config file not found; pass a file from configs/ or your own YAML.")
    try:
        loaded = yaml.load(file_path.read_text(encoding="utf-8"), Loader=_YAMLLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{file_path}:{mark.line + 1}" if mark is not None else str(file_path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(error, 'problem', error)}); fix the syntax.") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{file_path}: expected a mapping with model/data/train sections, got {type(loaded).__name__}"
        )
    return loaded


class _YAMLDumper(yaml.SafeDumper):
    """Block-style mappings, but lists of scalars on one line (``betas: [0.9, 0.999]``)."""


def _represent_list(dumper: yaml.SafeDumper, values: list[Any]) -> yaml.Node:
    scalars = all(not isinstance(value, (list, dict)) for value in values)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", values, flow_style=scalars)


_YAMLDumper.add_representer(list, _represent_list)


def dump_yaml(tree: Mapping[str, Any]) -> str:
    """``tree`` as YAML text, keys in their order, lists of scalars on one line."""
    return yaml.dump(dict(tree), Dumper=_YAMLDumper, sort_keys=False, default_flow_style=False, width=110)


# --- keys ---------------------------------------------------------------------------------------------------------
def known_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a defaults tree, sections included (``model``, ``model.span``, ``model.span.dropout``)."""
    keys: list[str] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping) and dotted not in OPEN_MAPPINGS:
            keys.extend(known_keys(value, f"{dotted}."))
    return keys


def _unknown_key(dotted: str, tree: Mapping[str, Any], source: str) -> ConfigError:
    candidates = known_keys(tree)
    head, _, tail = dotted.rpartition(".")
    alias = f"{head}.{_ALIASES[tail]}" if head and tail in _ALIASES else None
    close = alias if alias in candidates else closest(dotted, candidates, cutoff=0.5)
    if not close and tail:  # a misspelt last part under a known section: compare the last parts only
        close = closest(dotted, [key for key in candidates if key.rpartition(".")[0] == head], cutoff=0.3)
    hint = f"; did you mean '{close}'?" if close else "; see configs/rendered-world.yaml for every key"
    return ConfigError(f"{source}: unknown config key '{dotted}'{hint}")


def check_known_keys(
    values: Any, tree: Mapping[str, Any], source: str, prefix: str = "", root: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`ConfigError` at the first key of ``values`` that ``tree`` does not have.

    ``root`` is the whole defaults tree (suggestions are searched there); ``tree`` the part at ``prefix``.
    """
    root = tree if root is None else root
    if not isinstance(values, Mapping):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping of settings, got {values!r}")
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str) or key not in tree:
            raise _unknown_key(dotted, root, source)
        if isinstance(tree[key], Mapping) and dotted not in OPEN_MAPPINGS and value is not None:
            check_known_keys(value, tree[key], source, f"{dotted}.", root)


def rename_old_keys(tree: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``tree`` with every key of :data:`RENAMED_KEYS` moved to its new place (``tree`` is not changed).

    Raises:
        ConfigError: the old and the new key are both set.
    """
    renamed = copy.deepcopy(dict(tree))
    for old, new in RENAMED_KEYS.items():
        *old_path, old_name = old.split(".")
        *new_path, new_name = new.split(".")
        parent = _mapping_at(renamed, old_path)
        if parent is None or old_name not in parent:
            continue
        target = _mapping_at(renamed, new_path, create=True)
        if target is None:  # a section that is not a mapping: check_known_keys reports it
            continue
        if new_name in target:
            raise ConfigError(f"{source}: both '{old}' and '{new}' are set; keep '{new}' ('{old}' is its old name)")
        target[new_name] = parent.pop(old_name)
    return renamed


def _mapping_at(tree: dict[str, Any], path: list[str], create: bool = False) -> dict[str, Any] | None:
    """The mapping at ``path`` inside ``tree`` (with ``create``, missing or null parts become ``{}``), or None."""
    for part in path:
        if create and tree.get(part) is None:
            tree[part] = {}
        tree = tree.get(part)
        if not isinstance(tree, dict):
            return None
    return tree


# --- merging ------------------------------------------------------------------------------------------------------
def merge_trees(base: Mapping[str, Any], update: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Deep merge: mappings merge key by key, every other value (lists too) replaces; inputs are not changed.

    In an open mapping (``data.extra_eval``) a key set to null is removed and an empty mapping clears it.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if dotted in OPEN_MAPPINGS and isinstance(value, Mapping):
            current = dict(merged.get(key) or {}) if value else {}
            for name, path in value.items():
                if path is None:
                    current.pop(name, None)
                else:
                    current[name] = copy.deepcopy(path)
            merged[key] = current
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_trees(merged[key], value, f"{dotted}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"train.lr": 0.001, ...}`` (open mappings such as data.extra_eval stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in OPEN_MAPPINGS:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


# --- files and overrides ------------------------------------------------------------------------------------------
def load_tree(path: str | os.PathLike[str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A file merged over its ``base`` files (recursively, in order; the ``base`` key itself is consumed), each
    file's keys checked against ``defaults`` and old key names moved to their new place."""
    return _load_tree(Path(path), defaults, ())


def _load_tree(path: Path, defaults: Mapping[str, Any], seen: tuple[Path, ...]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"{path}: config files include each other in a loop ({chain}); remove one 'base:'")
    values = read_yaml(path)
    bases = values.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a file name or a list of file names, got {bases!r}")
    tree: dict[str, Any] = {}
    for base in bases:
        base_path = Path(base) if os.path.isabs(base) else path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{path}: base file '{base}' not found (looked for {base_path})")
        tree = merge_trees(tree, _load_tree(base_path, defaults, (*seen, resolved)))
    values = rename_old_keys(values, str(path))
    check_known_keys(values, defaults, str(path))
    return merge_trees(tree, values)


def overrides_tree(overrides: Iterable[str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.span.pooling_counts=[15,8]"]`` -> a nested update tree, keys checked against
    ``defaults`` (old key names moved to their new place), values parsed as YAML.

    Raises:
        ConfigError: an item without ``=``, an empty key, or an unknown key (with the closest known key).
    """
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"override {item!r} is not KEY=VALUE with a dotted key such as train.lr=3e-4 or data.root=worlds/w300"
            )
        parts = key.split(".")
        nested: dict[str, Any] = {parts[-1]: parse_yaml_value(raw)}
        for part in reversed(parts[:-1]):
            nested = {part: nested}
        nested = rename_old_keys(nested, f"override {item!r}")
        check_known_keys(nested, defaults, f"override {item!r}")
        tree = merge_trees(tree, nested)
    return tree
