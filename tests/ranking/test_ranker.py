"""The corpus index and the two-stage ranker on the tiny world (a tiny model, GloVe words, no download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from grounding.errors import InputError
from grounding.inference import Grounder
from grounding.model import GroundingModel, decode_spans
from grounding.model.pooling import pool_span_scores
from grounding.ranking import Ranker, RankingSettings, VideoIndex
from grounding.ranking.build import build_index, feature_source, sample_bank
from grounding.ranking.index import CLIP_STATES_FILE, INDEX_FILE, VIDEOS_FILE
from grounding.ranking.scoring import bank_normalisers, dual_softmax_scores
from tests.ranking import SENTENCES, save_tiny_checkpoint
from tests.training import single_thread, write_tiny_world  # noqa: F401 (single_thread: autouse)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"), num_videos=12, num_test=4)


@pytest.fixture(scope="module")
def checkpoint(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(world, tmp_path_factory.mktemp("checkpoint"))


def new_index(folder: Path, checkpoint: Path, bank: list[str] | None = None) -> VideoIndex:
    config = GroundingModel.from_pretrained(checkpoint).config
    return VideoIndex.create(
        folder, checkpoint, num_clips=config.num_clips, hidden_size=config.hidden_size, bank_sentences=bank or [],
        bank_pooling={"pooling": "max", "temperature": 1.0} if bank else None,
    )


def built(folder: Path, world: Path, checkpoint: Path, ids: list[str] | None = None, bank: list[str] | None = None) -> VideoIndex:
    index = new_index(folder, checkpoint, bank)
    build_index(index, Grounder.from_pretrained(checkpoint), feature_source(world / "features.h5", ids, {}), chunk=5,
                progress=False)
    return VideoIndex.open(folder)


def all_ids(world: Path) -> list[str]:
    return [f"v{index:02d}" for index in range(12)]


def test_an_index_built_in_two_parts_equals_one_built_at_once(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    ids = all_ids(world)
    whole = built(tmp_path / "whole", world, checkpoint)
    parts = built(tmp_path / "parts", world, checkpoint, ids[:5])
    build_index(parts, Grounder.from_pretrained(checkpoint), feature_source(world / "features.h5", None, {}),
                progress=False)
    parts = VideoIndex.open(tmp_path / "parts")
    assert parts.video_ids == whole.video_ids == ids
    assert np.array_equal(parts.embeddings, whole.embeddings)
    assert np.array_equal(parts.clip_states(range(12)), whole.clip_states(range(12)))
    assert np.array_equal(parts.durations, whole.durations)


def test_stored_states_are_the_model_s_own(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    index = built(tmp_path / "index", world, checkpoint)
    grounder = Grounder.from_pretrained(checkpoint)
    from grounding.data.features import open_feature_store

    with open_feature_store(world / "features.h5") as store:
        video = grounder.encode_features(store.get("v03"), duration=float(store.attrs("v03")["duration"]))
    mask = video.clip_mask[None]
    with torch.no_grad():
        states = grounder.model.encode_clips(video.clip_feats[None], mask)
        embedding = grounder.model.embed_video(states, mask)
    row = index.row_of["v03"]
    assert np.allclose(index.clip_states([row])[0], states[0].numpy(), atol=1e-6)
    assert np.allclose(index.embeddings[row], embedding[0].numpy(), atol=1e-6)


def test_reranked_scores_equal_grounding_each_video(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    index = built(tmp_path / "index", world, checkpoint)
    ranker = Ranker(Grounder.from_pretrained(checkpoint), index)
    ranking = ranker.rank(SENTENCES[0], top_videos=12, top_spans=2, rerank=12)
    assert sorted(video.video_id for video in ranking) == all_ids(world)
    assert all(video.reranked for video in ranking)
    assert [video.score for video in ranking] == sorted((video.score for video in ranking), reverse=True)
    grounder = Grounder.from_pretrained(checkpoint)
    from grounding.data.features import open_feature_store

    with open_feature_store(world / "features.h5") as store:
        for video in ranking[:4]:
            encoded = grounder.encode_features(store.get(video.video_id), float(store.attrs(video.video_id)["duration"]))
            result = grounder.predict(encoded, [SENTENCES[0]], top_k=2)
            expected = float(pool_span_scores(result.output, "max")[0])
            assert video.score == pytest.approx(expected, abs=1e-5)
            assert [span.start for span in video.spans] == pytest.approx([span.start for span in result.spans[0]])


def test_adding_videos_does_not_change_existing_scores(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    ids = all_ids(world)
    index = built(tmp_path / "index", world, checkpoint, ids[:6])
    before = {v.video_id: v.score for v in Ranker(Grounder.from_pretrained(checkpoint), index).rank(
        SENTENCES[1], top_videos=6, rerank=6)}
    build_index(index, Grounder.from_pretrained(checkpoint), feature_source(world / "features.h5", ids, {}),
                progress=False)
    after = {v.video_id: v.score for v in Ranker(Grounder.from_pretrained(checkpoint), VideoIndex.open(
        tmp_path / "index")).rank(SENTENCES[1], top_videos=12, rerank=12)}
    assert len(after) == 12
    for video_id, score in before.items():
        assert after[video_id] == pytest.approx(score, abs=1e-6)


def test_a_query_that_matches_nothing_still_gets_a_well_formed_ranking(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    index = built(tmp_path / "index", world, checkpoint)
    ranker = Ranker(Grounder.from_pretrained(checkpoint), index)
    ranking = ranker.rank("then then then", top_videos=20, rerank=3)  # words of no event; more videos than exist
    assert len(ranking) == 12 and len({video.video_id for video in ranking}) == 12
    assert [video.reranked for video in ranking] == [True] * 3 + [False] * 9
    assert all(np.isfinite(video.score) for video in ranking)
    stage1 = ranker.rank("then then then", top_videos=5, rerank=0)
    assert [video.spans for video in stage1] == [[]] * 5
    with pytest.raises(InputError, match="is empty"):
        ranker.rank("   ")
    empty = new_index(tmp_path / "empty", checkpoint)
    assert Ranker(Grounder.from_pretrained(checkpoint), empty).rank(SENTENCES[0]) == []


def test_dual_softmax_formula_and_the_empty_bank() -> None:
    scores = np.array([-1.0, -2.0, -0.5])
    assert np.allclose(dual_softmax_scores(scores, np.full(3, -np.inf), 0.5), scores / 0.5)
    bank = np.array([[-1.0, -3.0], [-0.2, -0.1], [-5.0, -6.0]])
    z = bank_normalisers(bank, 1.0)
    assert np.allclose(z, np.log(np.exp(bank).sum(axis=1)))
    rescored = dual_softmax_scores(scores, z, 1.0)
    log_p_q_given_v = scores - np.log(np.exp(scores) + np.exp(bank).sum(axis=1))
    assert np.allclose(rescored, scores + log_p_q_given_v)
    # video 1 is a hub (every bank query likes it): it drops below video 0 after rescoring
    assert scores[1] < scores[0] and rescored[1] < rescored[0]


def test_the_train_bank_dual_softmax_reads_only_the_bank(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    train_sentences = [json.loads(line)["query"] for line in (world / "train.jsonl").read_text().splitlines()]
    bank = sample_bank(train_sentences, 8)
    assert set(bank) <= set(train_sentences)
    index = built(tmp_path / "index", world, checkpoint, bank=bank)
    assert index.bank_scores is not None and index.bank_scores.shape == (12, len(bank))
    ranker = Ranker(Grounder.from_pretrained(checkpoint), index)
    settings = RankingSettings(top_videos=12, rerank=12, dual_softmax="train")
    first = ranker.rank_many(["then then then", SENTENCES[0]], settings)[1]
    alone = ranker.rank_many([SENTENCES[0]], settings)[0]  # other queries in the call change nothing
    assert [v.video_id for v in first] == [v.video_id for v in alone]
    assert [v.score for v in first] == pytest.approx([v.score for v in alone])
    plain = ranker.rank_many([SENTENCES[0]], RankingSettings(top_videos=12, rerank=12))[0]
    z = bank_normalisers(index.bank_scores[[index.row_of[v.video_id] for v in plain]], 1.0)
    expected = dual_softmax_scores(np.array([v.score for v in plain]), z, 1.0)
    assert sorted(v.score for v in alone) == pytest.approx(sorted(expected.tolist()))
    transductive = ranker.rank_many([SENTENCES[0], SENTENCES[1], "then then"],
                                    RankingSettings(rerank=4, dual_softmax="transductive", bank_size=2))
    assert len(transductive) == 3
    with pytest.raises(InputError, match="needs a batch of queries"):
        ranker.rank(SENTENCES[0], dual_softmax="transductive")
    no_bank = Ranker(Grounder.from_pretrained(checkpoint), built(tmp_path / "plain", world, checkpoint))
    with pytest.raises(InputError, match="has no query bank"):
        no_bank.rank(SENTENCES[0], dual_softmax="train")


def test_a_damaged_or_half_written_index_gets_a_clear_error(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    index = built(tmp_path / "index", world, checkpoint)
    folder = index.folder
    index.close()
    # a half-written append: bytes past the commit are ignored, then cut off by the next append
    with open(folder / CLIP_STATES_FILE, "ab") as handle:
        handle.write(b"\x00" * 1000)
    with open(folder / VIDEOS_FILE, "a", encoding="utf-8") as handle:
        handle.write('{"id": "half')
    reopened = VideoIndex.open(folder)
    assert len(reopened) == 12 and reopened.video_ids == all_ids(world)
    # a truncated data file or a broken index.json is damage
    with open(folder / CLIP_STATES_FILE, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(InputError, match=r"clip_states\.bin holds 0 rows but index\.json commits 12; the index is damaged"):
        VideoIndex.open(folder)
    (folder / INDEX_FILE).write_text("{not json")
    with pytest.raises(InputError, match="index.json is unreadable"):
        VideoIndex.open(folder)
    with pytest.raises(InputError, match="no such index folder"):
        VideoIndex.open(tmp_path / "nowhere")
    with pytest.raises(InputError, match="already holds an index"):
        new_index(tmp_path / "index2", checkpoint).close() or new_index(tmp_path / "index2", checkpoint)


def test_decode_spans_of_a_stage2_pair_match_the_grounder(world: Path, checkpoint: Path, tmp_path: Path) -> None:
    # The spans the ranker reports are decode_spans of its own output (seconds on the video's duration).
    index = built(tmp_path / "index", world, checkpoint)
    ranking = Ranker(Grounder.from_pretrained(checkpoint), index).rank(SENTENCES[1], top_videos=3, top_spans=1, rerank=3)
    for video in ranking:
        duration = index.durations[index.row_of[video.video_id]]
        assert 0.0 <= video.spans[0].start < video.spans[0].end <= duration
    assert callable(decode_spans)
