"""grounding fit-ranker: the retrieval heads learn to rank, the grounding model stays frozen, the fusion is used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from grounding.cli.main import main
from grounding.errors import InputError
from grounding.inference import Grounder
from grounding.model import GroundingModel
from grounding.model.losses import hn_nce_loss
from grounding.model.pooling import pool_span_scores
from grounding.ranking import Ranker, VideoIndex
from grounding.ranking.build import build_index, feature_source
from grounding.ranking.fit import (
    RETRIEVAL_HEADS,
    RankerFitSettings,
    fit_ranker,
    positives_matrix,
    save_fitted,
    split_by_video,
)
from grounding.ranking.scoring import RANKING_KEY, calibration_of, fusion_of
from tests.ranking import SENTENCES, save_tiny_checkpoint
from tests.training import single_thread, write_tiny_world  # noqa: F401 (single_thread: autouse)

SETTINGS = RankerFitSettings(epochs=40, batch_size=4, learning_rate=3e-3, calibration_fraction=0.25, rerank=12,
                             temperature=0.1, beta=0.5, video_pooling=None)  # HN-NCE, the checkpoint's mean pooling


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"), num_videos=16, num_test=4)


@pytest.fixture(scope="module")
def checkpoint(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(world, tmp_path_factory.mktemp("checkpoint"))


def train_queries(world: Path) -> tuple[list[tuple[int, str, str]], dict[int, tuple[str, ...]]]:
    """The tiny world's training sentences, and the multi-positive truth: a sentence is true of every video of
    its kind."""
    rows = [json.loads(line) for line in (world / "train.jsonl").read_text().splitlines()]
    queries = [(row["qid"], row["vid"], row["query"]) for row in rows]
    relevant = {row["qid"]: tuple(other["vid"] for other in rows if other["query"] == row["query"]) for row in rows}
    return queries, relevant


@pytest.fixture(scope="module")
def fitted(world: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    grounder = Grounder.from_pretrained(checkpoint)
    queries, relevant = train_queries(world)
    ids = sorted({video for _, video, _ in queries})
    report = fit_ranker(grounder, feature_source(world / "features.h5", ids, {}), queries, relevant, SETTINGS,
                        progress=False)
    folder = tmp_path_factory.mktemp("fitted")
    save_fitted(grounder.model, folder, report, str(checkpoint))
    return folder, report


def index_of(folder: Path, world: Path, checkpoint: Path) -> VideoIndex:
    config = GroundingModel.from_pretrained(checkpoint).config
    index = VideoIndex.create(folder, checkpoint, num_clips=config.num_clips, hidden_size=config.hidden_size)
    build_index(index, Grounder.from_pretrained(checkpoint), feature_source(world / "features.h5", None, {}),
                progress=False)
    return VideoIndex.open(folder)


def test_only_the_retrieval_heads_change(checkpoint: Path, fitted: tuple[Path, object]) -> None:
    before = GroundingModel.from_pretrained(checkpoint).state_dict()
    after = GroundingModel.from_pretrained(fitted[0]).state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed, "the fit trained nothing"
    assert all(name.split(".")[0] in RETRIEVAL_HEADS for name in changed), changed


def test_grounding_is_unchanged_by_the_fit(world: Path, checkpoint: Path, fitted: tuple[Path, object]) -> None:
    from grounding.data.features import open_feature_store

    original, refitted = Grounder.from_pretrained(checkpoint), Grounder.from_pretrained(fitted[0])
    with open_feature_store(world / "features.h5") as store:
        feats, duration = store.get("v13"), float(store.attrs("v13")["duration"])
    first = original.predict(original.encode_features(feats, duration), SENTENCES, top_k=3)
    second = refitted.predict(refitted.encode_features(feats, duration), SENTENCES, top_k=3)
    assert torch.equal(first.output.span_scores, second.output.span_scores)


def test_the_fit_learns_to_rank_held_out_videos(world: Path, checkpoint: Path, fitted: tuple[Path, object],
                                                tmp_path: Path) -> None:
    report = fitted[1]
    assert report.epoch_losses[-1] < 0.5 * report.epoch_losses[0]
    ranker = Ranker(Grounder.from_pretrained(fitted[0]), index_of(tmp_path / "index", world, fitted[0]))
    for kind, sentence in enumerate(SENTENCES):
        top = ranker.rank(sentence, top_videos=4, rerank=0)  # stage 1 alone, over all 16 videos (4 never trained on)
        assert [int(video.video_id[1:]) % 2 for video in top] == [kind] * 4, sentence


def test_the_ranker_scores_with_the_fitted_fusion(world: Path, fitted: tuple[Path, object], tmp_path: Path) -> None:
    grounder = Grounder.from_pretrained(fitted[0])
    a, b = fusion_of(grounder.model)
    assert (a, b) == (fitted[1].fusion["stage1_weight"], fitted[1].fusion["stage2_weight"])
    assert grounder.model.pretrained_metadata[RANKING_KEY]["fitted_from"]
    ranker = Ranker(grounder, index_of(tmp_path / "index", world, fitted[0]))
    ranking = ranker.rank(SENTENCES[1], top_videos=6, rerank=6)
    from grounding.data.features import open_feature_store

    with open_feature_store(world / "features.h5") as store:
        for video in ranking:
            encoded = grounder.encode_features(store.get(video.video_id), float(store.attrs(video.video_id)["duration"]))
            pooled = float(pool_span_scores(grounder.predict(encoded, [SENTENCES[1]]).output, "max")[0])
            assert video.score == pytest.approx(a * video.stage1_score + b * pooled, abs=1e-4)
    scale, bias = calibration_of(grounder.model)
    for video in ranking:
        assert video.probability == pytest.approx(1.0 / (1.0 + np.exp(-(scale * video.score + bias))), abs=1e-9)
    chances = np.array([video.probability for video in ranking])
    assert np.all((chances > 0) & (chances < 1)) and np.all(np.diff(chances) * np.sign(scale) <= 1e-12)


def test_an_unfitted_ranker_s_probability_is_a_softmax_over_the_reranked(world: Path, checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    assert calibration_of(GroundingModel.from_pretrained(checkpoint)) is None
    ranker = Ranker(Grounder.from_pretrained(checkpoint), index_of(tmp_path / "index", world, checkpoint))
    chances = np.array([video.probability for video in ranker.rank(SENTENCES[0], top_videos=6, rerank=6)])
    assert chances.sum() == pytest.approx(1.0) and np.all(np.diff(chances) <= 1e-12)


def test_epochs_zero_refits_only_the_fusion(world: Path, fitted: tuple[Path, object], tmp_path: Path) -> None:
    grounder = Grounder.from_pretrained(fitted[0])
    queries, relevant = train_queries(world)
    ids = sorted({video for _, video, _ in queries})
    settings = RankerFitSettings(epochs=0, calibration_fraction=0.25, rerank=12, video_pooling="mean")
    report = fit_ranker(grounder, feature_source(world / "features.h5", ids, {}), queries, relevant, settings,
                        progress=False)
    assert report.epoch_losses == []
    before = GroundingModel.from_pretrained(fitted[0]).state_dict()
    assert all(torch.equal(tensor, before[name]) for name, tensor in grounder.model.state_dict().items())
    assert set(report.fusion) == {"stage1_weight", "stage2_weight", "probability_scale", "probability_bias"}
    with pytest.raises(InputError, match="epochs >= 1"):  # a new projection cannot go untrained
        fit_ranker(grounder, feature_source(world / "features.h5", ids, {}), queries, relevant,
                   RankerFitSettings(epochs=0, video_pooling="mean-max"), progress=False)


def test_an_unfitted_checkpoint_ranks_by_the_pooled_score(checkpoint: Path) -> None:
    assert fusion_of(GroundingModel.from_pretrained(checkpoint)) == (0.0, 1.0)


def test_true_matches_are_never_negatives() -> None:
    positives, own = positives_matrix([(0, "a"), (1, "b")], ["a", "b", "c"], {0: ("a", "c"), 1: ("b",)})
    assert positives.tolist() == [[True, False, True], [False, True, False]]
    assert own.tolist() == [0, 1]
    logits = torch.tensor([[2.0, 0.5, 9.0], [0.1, 1.0, 0.3]])
    loss = hn_nce_loss(logits, own, ~positives)
    moved = logits.clone()
    moved[0, 2] = -50.0  # query 0's other true video: neither positive nor negative, so it moves nothing
    assert float(hn_nce_loss(moved, own, ~positives)) == pytest.approx(float(loss))
    with pytest.raises(InputError, match="not among the encoded videos"):
        positives_matrix([(0, "z")], ["a"], None)


def test_the_calibration_split_holds_out_whole_videos() -> None:
    videos = ["a", "a", "b", "c", "c", "c", "d", "e"]
    train, calibration = split_by_video(videos, 0.4, seed=3)
    assert sorted(train.tolist() + calibration.tolist()) == list(range(len(videos)))
    assert not {videos[i] for i in train.tolist()} & {videos[i] for i in calibration.tolist()}
    assert len({videos[i] for i in calibration.tolist()}) == 2
    again = split_by_video(videos, 0.4, seed=3)
    assert torch.equal(again[1], calibration)
    with pytest.raises(InputError, match="at least 2 videos"):
        split_by_video(["a", "a"], 0.5, seed=0)


def test_bad_settings_get_one_line_errors() -> None:
    for bad in (dict(alpha=0.0), dict(beta=-1.0), dict(temperature=0.0), dict(epochs=-1), dict(calibration_fraction=1.0)):
        with pytest.raises(InputError):
            RankerFitSettings(**bad).check()  # type: ignore[arg-type]


def test_the_command_writes_a_fitted_checkpoint(world: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    queries, relevant = train_queries(world)
    relevance = tmp_path / "train.relevant.jsonl"
    rows = [json.loads(line) for line in (world / "train.jsonl").read_text().splitlines()]
    with open(relevance, "w", encoding="utf-8") as handle:
        for row in rows:
            truth = [{"vid": other["vid"], "windows": other["relevant_windows"]} for other in rows
                     if other["query"] == row["query"]]
            handle.write(json.dumps({"qid": row["qid"], "vid": row["vid"], "query": row["query"], "relevant": truth}) + "\n")
    out = tmp_path / "ranker"
    status = main(["fit-ranker", "--checkpoint", str(checkpoint), "--features", str(world / "features.h5"),
                   "--annotations", str(world / "train.jsonl"), "--relevant", str(relevance), "--out", str(out),
                   "--epochs", "3", "--batch-size", "4", "--rerank", "4", "--calibration-fraction", "0.25",
                   "--json", str(tmp_path / "fit.json"), "--no-progress"])
    assert status == 0
    report = json.loads((tmp_path / "fit.json").read_text())
    assert report["videos"] == 12 and report["train_queries"] + report["calibration_queries"] == 12
    assert len(report["epoch_losses"]) == 3 and report["settings"]["beta"] == 0.0
    assert report["settings"]["video_pooling"] == "mean-max"  # the defaults: InfoNCE, mean-max
    assert fusion_of(GroundingModel.from_pretrained(out)) == (report["fusion"]["stage1_weight"],
                                                              report["fusion"]["stage2_weight"])
    assert "fusion" in capsys.readouterr().out
    assert main(["fit-ranker", "--checkpoint", str(checkpoint), "--features", str(world / "features.h5"),
                 "--annotations", str(world / "train.jsonl"), "--out", str(checkpoint)]) == 2
    assert "write the fitted one to a new folder" in capsys.readouterr().err


def test_mean_max_pooling_gives_a_wider_head_and_keeps_the_grounding(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    grounder = Grounder.from_pretrained(checkpoint)
    queries, relevant = train_queries(world)
    ids = sorted({video for _, video, _ in queries})
    settings = RankerFitSettings(epochs=3, batch_size=4, calibration_fraction=0.25, rerank=4, video_pooling="mean-max",
                                 video_features=False)
    report = fit_ranker(grounder, feature_source(world / "features.h5", ids, {}), queries, relevant, settings,
                        progress=False)
    save_fitted(grounder.model, tmp_path / "fitted", report, str(checkpoint))
    fitted = GroundingModel.from_pretrained(tmp_path / "fitted")
    hidden = fitted.config.hidden_size
    assert fitted.config.video_embedding_pooling == "mean-max" and not fitted.config.video_embedding_features
    assert fitted.video_projection.weight.shape == (hidden, 2 * hidden)
    states = torch.randn(2, 5, hidden)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        embedding = fitted.embed_video(states, mask)
        second = torch.cat([states[1, :3].mean(0), states[1, :3].amax(0)])
        expected = torch.nn.functional.normalize(fitted.video_projection(second), dim=-1)
    assert torch.allclose(embedding[1], expected, atol=1e-6)
    original = GroundingModel.from_pretrained(checkpoint).state_dict()
    for name, tensor in fitted.state_dict().items():
        if name.split(".")[0] not in RETRIEVAL_HEADS:
            assert torch.equal(tensor, original[name]), name
    with pytest.raises(InputError, match="video pooling"):
        RankerFitSettings(video_pooling="median").check()


def test_pooled_input_features_widen_the_head_are_standardised_and_keep_the_grounding(
    world: Path, checkpoint: Path, tmp_path: Path
) -> None:
    grounder = Grounder.from_pretrained(checkpoint)
    queries, relevant = train_queries(world)
    ids = sorted({video for _, video, _ in queries})
    settings = RankerFitSettings(epochs=2, batch_size=4, calibration_fraction=0.25, rerank=4, video_pooling="mean")
    report = fit_ranker(grounder, feature_source(world / "features.h5", ids, {}), queries, relevant, settings,
                        progress=False)
    assert report.settings["video_features"] is True and report.settings["embedding_dropout"] == 0.5
    save_fitted(grounder.model, tmp_path / "fitted", report, str(checkpoint))
    fitted = GroundingModel.from_pretrained(tmp_path / "fitted")
    config = fitted.config
    assert config.video_embedding_features
    assert fitted.video_projection.weight.shape == (config.hidden_size, config.hidden_size + config.input_dim)
    states, feats = torch.randn(1, 4, config.hidden_size), torch.randn(1, 4, config.input_dim)
    mask = torch.tensor([[True, True, True, False]])
    with torch.no_grad():
        pooled = torch.cat([states[0, :3].mean(0), fitted.clip_standardizer(feats[0, :3]).mean(0)])
        standardizer = fitted.video_embedding_standardizer
        expected = torch.nn.functional.normalize(
            fitted.video_projection((pooled - standardizer.mean) / standardizer.std), dim=-1)
        assert torch.allclose(fitted.embed_video(states, mask, feats)[0], expected, atol=1e-5)
        # fitted on the candidate videos: their pooled vectors come out with mean 0
        assert not torch.equal(standardizer.mean, torch.zeros_like(standardizer.mean))
    with pytest.raises(InputError, match="pass clip_feats"):
        fitted.embed_video(states, mask)
    original = GroundingModel.from_pretrained(checkpoint).state_dict()
    for name, tensor in fitted.state_dict().items():
        if name.split(".")[0] not in (*RETRIEVAL_HEADS, "video_embedding_standardizer"):
            assert torch.equal(tensor, original[name]), name
    with pytest.raises(InputError, match="needs new heads trained"):
        fit_ranker(Grounder.from_pretrained(checkpoint), feature_source(world / "features.h5", ids, {}), queries,
                   relevant, RankerFitSettings(epochs=0), progress=False)
    with pytest.raises(InputError, match="embedding dropout"):
        RankerFitSettings(embedding_dropout=1.0).check()
