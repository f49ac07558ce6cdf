"""Training: YAML experiment configs, datasets over annotations + clip features, the trainer, checkpoints.

    config = load_config("configs/rendered-world.yaml", ["train.epochs=5"])
    result = train(config)                    # writes config.yaml, log.csv, metrics/, best/, last/
    result = train(config, resume=True)       # continues a stopped run from last/

``torchrun --nproc-per-node N -m grounding.cli.main train ...`` trains with DistributedDataParallel.
See docs/training.md.
"""

from grounding.training.checkpoint import load_training_state, save_training_state
from grounding.training.config import (
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    config_to_yaml,
    load_config,
    parse_overrides,
    save_config,
)
from grounding.training.data import (
    GroundingBatch,
    GroundingDataset,
    GroundingSample,
    SentenceBank,
    collate_samples,
    split_by_videos,
)
from grounding.training.loop import Trainer, TrainResult, lr_multiplier, train

__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "GroundingBatch",
    "GroundingDataset",
    "GroundingSample",
    "SentenceBank",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "collate_samples",
    "config_to_yaml",
    "load_config",
    "load_training_state",
    "lr_multiplier",
    "parse_overrides",
    "save_config",
    "save_training_state",
    "split_by_videos",
    "train",
]
