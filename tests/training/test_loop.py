"""The trainer on a tiny world: outputs, exact resume, determinism, schedules, refusals."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grounding.data import open_feature_store
from grounding.errors import ConfigError, InputError
from grounding.model import GroundingModel
from grounding.training.checkpoint import load_training_state
from grounding.training.config import ExperimentConfig, TrainConfig, load_config
from grounding.training.loop import csv_columns, lr_multiplier, train
from grounding.training.splits import build_splits
from tests.training import single_thread, tiny_config_tree, write_tiny_world  # noqa: F401 (single_thread: autouse)


def tiny_config(world: Path, output_dir: Path, **train_values) -> ExperimentConfig:
    return ExperimentConfig.from_dict(tiny_config_tree(world, output_dir, **train_values))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def finished_run(world: Path, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("runs") / "uninterrupted"
    config = tiny_config(world, output)
    return config, train(config)


def result_train_rows(config: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split's clip and word rows, rebuilt the way the trainer builds them."""
    store = open_feature_store(config.data.resolve(config.data.features))
    try:
        train_split, _ = build_splits(config, store, torch.device("cpu"), progress=False, note=print)
        clips, words = train_split.dataset.input_chunks()
        return torch.cat(list(clips)), torch.cat(list(words))
    finally:
        store.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def without_time(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "seconds"}


def test_run_writes_config_logs_metrics_and_checkpoints(finished_run) -> None:
    config, result = finished_run
    run = result.run_dir
    assert result.epochs_done == 2 and not result.stopped_early
    assert load_config(run / "config.yaml") == config
    rows = read_rows(run / "log.csv")
    assert list(rows[0]) == csv_columns(["val", "test"])
    assert [row["epoch"] for row in rows] == ["1", "2"]
    steps_per_epoch = 3  # 12 training videos, 3 held out as val (val_fraction 0.25) -> 9 queries / batch 4
    assert [int(row["step"]) for row in rows] == [steps_per_epoch, 2 * steps_per_epoch]
    for epoch in (1, 2):
        record = json.loads((run / "metrics" / f"epoch_{epoch:03d}.json").read_text())
        assert record["epoch"] == epoch and set(record["loss"]) == {"total", "span", "boundary", "inside", "contrastive", "ranking"}
        assert record["metrics"]["val"]["num_queries"] == 3 and record["metrics"]["test"]["num_queries"] == 4
        assert float(rows[epoch - 1]["test/R1@0.5"]) == record["metrics"]["test"]["R1@0.5"]
    assert result.metrics == record["metrics"]
    best_record = json.loads((run / "best" / "metrics.json").read_text())
    assert best_record["epoch"] == result.best_epoch
    assert best_record["metrics"]["val"]["R1@0.5"] == result.best_value
    assert result.best_value == max(float(row["val/R1@0.5"]) for row in rows)
    state = load_training_state(run / "last")
    assert (state["epoch"], state["step"]) == (2, 2 * steps_per_epoch)
    assert not (run / "best" / "training_state.json").exists()
    model = GroundingModel.from_pretrained(run / "last")
    pipeline = model.pretrained_metadata["pipeline"]
    assert pipeline["text_encoder"] == config.data.text_encoder
    extraction = pipeline["extraction"]  # read from the feature file's attributes
    assert (extraction["backbone"], extraction["clip_seconds"], extraction["frame_size"]) == ("test-backbone", 1.0, 32)
    assert pipeline["nms"] == 0.5
    # The input standardisation was fitted on the training split's clips and words, and travels with the model.
    clip_rows, word_rows = result_train_rows(config)
    assert torch.allclose(model.clip_standardizer.mean, clip_rows.mean(dim=0), atol=1e-5)
    floor = float(word_rows.std(dim=0).mean()) * 1e-2
    assert torch.allclose(model.word_standardizer.std, word_rows.std(dim=0).clamp_min(floor), rtol=1e-4)
    assert not torch.allclose(model.clip_standardizer.std, torch.ones_like(model.clip_standardizer.std))
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.yaml", "last", "log.csv", "metrics"]


def test_resume_after_a_stop_reaches_the_same_weights_and_metrics(world: Path, tmp_path: Path, finished_run) -> None:
    _, reference = finished_run
    output = tmp_path / "resumed"
    first = train(tiny_config(world, output, stop_after_epoch=1))
    assert first.stopped_early and first.epochs_done == 1
    assert load_training_state(output / "last")["epoch"] == 1
    assert not (output / "metrics" / "epoch_002.json").exists()
    second = train(tiny_config(world, output), resume=True)  # stop_after_epoch may change on resume
    assert second.epochs_done == 2 and not second.stopped_early
    expected = load_file(reference.run_dir / "last" / "model.safetensors")
    resumed = load_file(output / "last" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    for epoch in (1, 2):
        name = f"metrics/epoch_{epoch:03d}.json"
        assert without_time(json.loads((output / name).read_text())) == without_time(
            json.loads((reference.run_dir / name).read_text())
        )
    assert (second.best_epoch, second.best_value) == (reference.best_epoch, reference.best_value)
    assert len(read_rows(output / "log.csv")) == 2


def test_cropped_training_resumes_to_the_same_weights(world: Path, tmp_path: Path, finished_run) -> None:
    _, reference = finished_run
    uninterrupted = train(tiny_config(world, tmp_path / "crop", crop_probability=0.5))
    first = train(tiny_config(world, tmp_path / "crop-resumed", crop_probability=0.5, stop_after_epoch=1))
    assert first.stopped_early
    train(tiny_config(world, tmp_path / "crop-resumed", crop_probability=0.5), resume=True)
    expected = load_file(reference.run_dir / "last" / "model.safetensors")
    cropped = load_file(uninterrupted.run_dir / "last" / "model.safetensors")
    resumed = load_file(tmp_path / "crop-resumed" / "last" / "model.safetensors")
    assert all(torch.equal(cropped[name], resumed[name]) for name in cropped)
    assert not all(torch.equal(cropped[name], expected[name]) for name in expected)  # the crops changed training


def test_test_splits_only_for_the_chosen_and_the_last_model(world: Path, tmp_path: Path, finished_run) -> None:
    _, reference = finished_run
    result = train(tiny_config(world, tmp_path / "val-only", test_every_epoch=False))
    expected = load_file(reference.run_dir / "last" / "model.safetensors")
    trained = load_file(result.run_dir / "last" / "model.safetensors")
    assert all(torch.equal(expected[name], trained[name]) for name in expected)  # evaluation never touches training
    assert (result.best_epoch, result.best_value) == (reference.best_epoch, reference.best_value)
    assert result.best_epoch == 1  # so best/ is scored on test after training, not by the last epoch's pass
    assert result.metrics == reference.metrics
    rows = read_rows(result.run_dir / "log.csv")
    for epoch in (1, 2):
        name = f"metrics/epoch_{epoch:03d}.json"
        record = json.loads((result.run_dir / name).read_text())
        full = json.loads((reference.run_dir / name).read_text())["metrics"]
        scored = {"val", "test"} if epoch in (result.best_epoch, 2) else {"val"}
        assert record["metrics"] == {split: full[split] for split in scored}
        assert (rows[epoch - 1]["test/R1@0.5"] != "") == ("test" in scored)
    best_record = json.loads((result.run_dir / "best" / "metrics.json").read_text())
    assert best_record["epoch"] == result.best_epoch
    reference_best = json.loads((reference.run_dir / "best" / "metrics.json").read_text())
    assert best_record["metrics"] == reference_best["metrics"]


def test_two_identical_runs_give_identical_results(world: Path, tmp_path: Path, finished_run) -> None:
    _, reference = finished_run
    again = train(tiny_config(world, tmp_path / "again"))
    assert again.metrics == reference.metrics
    expected = load_file(reference.run_dir / "best" / "model.safetensors")
    repeated = load_file(tmp_path / "again" / "best" / "model.safetensors")
    assert all(torch.equal(expected[name], repeated[name]) for name in expected)


def test_resume_refuses_another_config_and_a_fresh_start_refuses_an_existing_run(world: Path, finished_run) -> None:
    config, result = finished_run
    with pytest.raises(ConfigError, match=r"made with another config \(train\.lr: 0\.01 -> 0\.02\)"):
        train(tiny_config(world, result.run_dir, lr=0.02), resume=True)
    changed_model = config.to_dict()
    changed_model["model"]["hidden_size"] = 32
    with pytest.raises(ConfigError, match=r"model\.hidden_size: 16 -> 32"):
        train(ExperimentConfig.from_dict(changed_model), resume=True)
    with pytest.raises(ConfigError, match="already holds a run .* pass --resume"):
        train(config)


def test_resume_without_a_run_is_an_input_error(world: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no last/ checkpoint to resume"):
        train(tiny_config(world, tmp_path / "nothing"), resume=True)


def test_skipped_queries_are_listed_and_count_as_misses(world: Path, tmp_path: Path) -> None:
    test_file = tmp_path / "test.jsonl"
    lines = (world / "test.jsonl").read_text().splitlines()
    lost = {"qid": 99, "query": "a red ball jumps", "vid": "not-extracted", "duration": 10.0,
            "relevant_windows": [[1.0, 3.0]]}
    test_file.write_text("\n".join(lines + [json.dumps(lost)]) + "\n")
    tree = tiny_config_tree(world, tmp_path / "run", epochs=1)
    tree["data"].update({"test": str(test_file)})
    with pytest.raises(InputError, match="qid 99 asks about video 'not-extracted'"):
        train(ExperimentConfig.from_dict(tree))
    tree["data"]["skip_missing_videos"] = True
    result = train(ExperimentConfig.from_dict(tree))
    assert [(q.qid, q.video_id, q.split) for q in result.skipped] == [(99, "not-extracted", "test")]
    assert json.loads((tmp_path / "run" / "skipped.json").read_text())[0]["qid"] == 99
    assert result.metrics["test"]["num_queries"] == 5  # the skipped query stays in the denominator


def test_width_mismatches_are_config_errors(world: Path, tmp_path: Path) -> None:
    tree = tiny_config_tree(world, tmp_path / "a")
    tree["model"] = {**tree["model"], "input_dim": 7}
    with pytest.raises(ConfigError, match=r"holds 6-d clip features, but model\.input_dim is 7; set model\.input_dim"):
        train(ExperimentConfig.from_dict(tree))
    tree = tiny_config_tree(world, tmp_path / "b")
    tree["model"] = {**tree["model"], "text": {"input_dim": 384}}
    with pytest.raises(ConfigError, match=r"gives 8-d word features, but model\.text\.input_dim is 384"):
        train(ExperimentConfig.from_dict(tree))


def test_lr_schedules_by_hand() -> None:
    cosine = lr_multiplier(TrainConfig(epochs=4, warmup_epochs=1.0, warmup_start_factor=0.0, min_lr_ratio=0.1), 10)
    assert [cosine(step) for step in (0, 5, 10)] == [0.0, 0.5, 1.0]  # linear warm-up over 10 steps
    assert cosine(25) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way: 0.55
    assert cosine(40) == pytest.approx(0.1)
    step = lr_multiplier(TrainConfig(epochs=50, warmup_epochs=0.0, schedule="step", step_size=20, step_gamma=0.1), 7)
    assert [step(s) for s in (0, 139, 140, 279, 280)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    constant = lr_multiplier(TrainConfig(epochs=3, warmup_epochs=0.5, schedule="constant"), 4)
    assert [constant(s) for s in (0, 1, 2, 11)] == pytest.approx([0.01, 0.505, 1.0, 1.0])


def test_the_ranking_terms_train_and_are_logged(world: Path, tmp_path: Path) -> None:
    tree = tiny_config_tree(world, tmp_path / "ranking", epochs=1)
    tree["model"] = {**tree["model"], "loss": {"ranking_weight": 0.5, "ranking_negatives": 2, "contrastive_weight": 0.2,
                                               "contrastive_beta": 0.5}}
    result = train(ExperimentConfig.from_dict(tree))
    record = json.loads((result.run_dir / "metrics" / "epoch_001.json").read_text())
    assert record["loss"]["ranking"] > 0 and record["loss"]["contrastive"] > 0
    assert math.isfinite(record["loss"]["total"])


def test_the_training_forward_gives_the_model_s_numbers_and_the_negative_pairs() -> None:
    from grounding.training.forward import TrainingForward
    from tests.model import make_batch
    from tests.model import tiny_config as tiny_model_config

    torch.manual_seed(0)
    model = GroundingModel(tiny_model_config()).eval()
    inputs = make_batch([8, 6, 7], [5, 3, 4])
    with torch.no_grad():
        expected = model(*inputs)
        fields = TrainingForward(model)(*inputs, torch.tensor([[1], [2], [0]]))
        clip_states = model.encode_clips(inputs[0], inputs[1])
        word_states = model.encode_query(inputs[2], inputs[3], inputs[4])
        query1_on_video2 = model.score_encoded(clip_states[[2]], inputs[1][[2]], word_states[[1]], inputs[3][[1]])
    assert torch.equal(fields["span_scores"], expected.span_scores)
    assert fields["negative_span_scores"].shape == expected.span_scores.shape
    assert torch.allclose(fields["negative_span_scores"][1], query1_on_video2.span_scores[0], atol=1e-6)


def test_the_training_forward_pools_the_input_features_when_the_embedding_asks_for_them() -> None:
    import dataclasses

    from grounding.training.forward import TrainingForward
    from tests.model import make_batch
    from tests.model import tiny_config as tiny_model_config

    torch.manual_seed(0)
    model = GroundingModel(dataclasses.replace(tiny_model_config(), video_embedding_features=True)).eval()
    inputs = make_batch([8, 6, 7], [5, 3, 4])
    with torch.no_grad():
        assert model(*inputs).video_embedding is None  # score_encoded never sees the features
        for detach in (False, True):
            fields = TrainingForward(model, detach_embeddings=detach)(*inputs)
            clip_states = model.encode_clips(inputs[0], inputs[1])
            expected = model.embed_video(clip_states, inputs[1], inputs[0])
            assert torch.allclose(fields["video_embedding"], expected, atol=1e-6)


def test_known_true_matches_are_never_negatives(world: Path, tmp_path: Path) -> None:
    from grounding.eval.relevance import relevance_line
    from grounding.model import LossConfig
    from grounding.training.data import GroundingBatch
    from grounding.training.forward import negative_pairs

    batch = GroundingBatch.__new__(GroundingBatch)
    batch.qids, batch.video_ids = [0, 1, 2, 3], ["a", "b", "a", "c"]
    batch.clip_feats = torch.zeros(4, 1, 1)
    relevant = {0: frozenset({"a", "c"}), 1: frozenset({"b"}), 2: frozenset({"a"}), 3: frozenset({"c"})}
    index, valid, known = negative_pairs(batch, LossConfig(ranking_weight=1.0, ranking_negatives=3), relevant,
                                         torch.device("cpu"))
    assert index.tolist() == [[1, 2, 3], [2, 3, 0], [3, 0, 1], [0, 1, 2]]
    # query 0 (video a, also true of c): b is its only negative; query 2 (video a): b and c
    assert valid.tolist() == [[True, False, False], [True, True, True], [True, False, True], [True, True, True]]
    assert known[0].tolist() == [True, False, True, True]
    none = negative_pairs(batch, LossConfig(), relevant, torch.device("cpu"))
    assert none == (None, None, None)

    # the same truth given as data.train_relevant trains
    rows = [json.loads(line) for line in (world / "train.jsonl").read_text().splitlines()]
    by_sentence: dict[str, dict[str, list]] = {}
    for row in rows:
        by_sentence.setdefault(row["query"], {})[row["vid"]] = row["relevant_windows"]
    (tmp_path / "relevant_train.jsonl").write_text("".join(
        relevance_line(row["qid"], row["vid"], row["query"], by_sentence[row["query"]]) + "\n" for row in rows))
    tree = tiny_config_tree(world, tmp_path / "run", epochs=1)
    tree["data"]["train_relevant"] = str(tmp_path / "relevant_train.jsonl")
    tree["model"] = {**tree["model"], "loss": {"ranking_weight": 0.5, "ranking_negatives": 3, "contrastive_weight": 0.2}}
    result = train(ExperimentConfig.from_dict(tree))
    record = json.loads((result.run_dir / "metrics" / "epoch_001.json").read_text())
    assert math.isfinite(record["loss"]["total"])
