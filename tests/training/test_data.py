"""Training data: the sentence bank, the dataset (resampling, missing videos), collation, the val split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grounding.data.features import open_feature_store
from grounding.data.records import QueryRecord
from grounding.data.resample import resample_clips
from grounding.errors import InputError
from grounding.text.encoders import create_text_encoder
from grounding.training.augment import TemporalCrop
from grounding.training.data import GroundingDataset, SentenceBank, collate_samples, split_by_videos
from tests.training import NUM_CLIPS, single_thread, write_tiny_world  # noqa: F401 (single_thread: autouse)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"), num_videos=6, num_test=2)


@pytest.fixture()
def encoder(world: Path):
    return create_text_encoder(f"glove:{world / 'glove.txt'}", syntax="sequential")


def record(qid: int, video_id: str, sentence: str, window: tuple[float, float] = (1.0, 3.0)) -> QueryRecord:
    return QueryRecord(qid=qid, video_id=video_id, duration=10.0, windows=(window,), sentence=sentence)


def test_bank_encodes_each_distinct_sentence_once(encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    original = encoder.encode

    def counting(sentences, device=None):
        calls.append(list(sentences))
        return original(sentences, device=device)

    monkeypatch.setattr(encoder, "encode", counting)
    bank = SentenceBank(encoder, ["a red ball jumps", "the blue box spins", "a red ball jumps"])
    bank.add(encoder, ["the blue box spins", "the red box jumps"])
    assert calls == [["a red ball jumps", "the blue box spins"], ["the red box jumps"]]
    assert len(bank) == 3


def test_bank_matches_encoding_each_sentence_alone(encoder) -> None:
    sentences = ["a red ball jumps", "the box spins", "red"]
    bank = SentenceBank(encoder, sentences)
    for sentence in sentences:
        alone = encoder.encode([sentence])
        words, edges = bank.get(sentence)
        assert torch.equal(words, alone.word_feats[0])
        assert torch.equal(edges, alone.edge_index)  # B = 1: flattened indices are the local ones
    with pytest.raises(InputError, match="was not encoded into this bank"):
        bank.get("blue")


def test_dataset_resamples_features_to_num_clips(world: Path, encoder) -> None:
    store = open_feature_store(world / "features.h5")
    records = [record(0, "v00", "a red ball jumps", (2.0, 4.5))]
    dataset = GroundingDataset(records, store, SentenceBank(encoder, ["a red ball jumps"]), NUM_CLIPS)
    sample = dataset[0]
    expected, _ = resample_clips(store.get("v00"), NUM_CLIPS)
    assert torch.equal(sample.clip_feats, torch.from_numpy(expected))
    assert sample.clip_mask.all() and sample.clip_feats.shape == (NUM_CLIPS, 6)
    assert sample.target_window == (2.0, 4.5) and sample.qid == 0 and sample.duration == 10.0
    assert sample.word_feats.shape == (4, 8)
    uncached = GroundingDataset(records, store, dataset.bank, NUM_CLIPS, cache_features=False)
    assert torch.equal(uncached[0].clip_feats, sample.clip_feats)
    store.close()


def test_dataset_crops_around_the_moment_per_epoch(world: Path, encoder) -> None:
    store = open_feature_store(world / "features.h5")
    stored = store.get("v00")
    duration = float(stored.shape[0])  # the tiny world stores one clip per second
    records = [record(qid, "v00", "a red ball jumps", (2.0, 4.5)) for qid in range(8)]
    records = [QueryRecord(r.qid, r.video_id, duration, r.windows, r.sentence) for r in records]
    bank = SentenceBank(encoder, ["a red ball jumps"])
    dataset = GroundingDataset(records, store, bank, NUM_CLIPS, crop=TemporalCrop(1.0), seed=5)
    plain = GroundingDataset(records, store, bank, NUM_CLIPS)
    for epoch in (1, 2):
        dataset.set_epoch(epoch)
        for index in range(len(records)):
            sample = dataset[index]
            start, end = sample.target_window
            offset = 2.0 - start  # whole stored clips were cut off the front
            assert offset == int(offset) and 0 <= offset <= 2
            assert end - start == pytest.approx(2.5) and sample.duration >= end
            first, stop = int(offset), int(offset + sample.duration)
            expected, _ = resample_clips(stored[first:stop], NUM_CLIPS)
            assert torch.equal(sample.clip_feats, torch.from_numpy(expected))
    dataset.set_epoch(1)
    epoch_one = [(dataset[i].duration, dataset[i].target_window) for i in range(len(records))]
    assert epoch_one == [(dataset[i].duration, dataset[i].target_window) for i in range(len(records))]  # seeded
    dataset.set_epoch(2)
    assert epoch_one != [(dataset[i].duration, dataset[i].target_window) for i in range(len(records))]
    assert any(duration < plain[0].duration for duration, _ in epoch_one)
    assert plain[0].target_window == (2.0, 4.5)  # no crop: the record as it is
    store.close()


def test_collate_pads_words_and_offsets_edges(world: Path, encoder) -> None:
    store = open_feature_store(world / "features.h5")
    sentences = ["red", "a red ball jumps", "the box spins"]
    records = [record(i, f"v0{i}", sentence) for i, sentence in enumerate(sentences)]
    dataset = GroundingDataset(records, store, SentenceBank(encoder, sentences), NUM_CLIPS)
    batch = collate_samples([dataset[i] for i in range(3)])
    direct = encoder.encode(sentences)
    assert batch.word_feats.shape == (3, 4, 8) and batch.clip_feats.shape == (3, NUM_CLIPS, 6)
    assert batch.word_mask.tolist() == direct.word_mask.tolist()
    assert torch.equal(batch.word_feats, direct.word_feats)
    assert sorted(map(tuple, batch.word_edge_index.T.tolist())) == sorted(map(tuple, direct.edge_index.T.tolist()))
    assert batch.durations.dtype == torch.float64 and batch.target_windows.tolist() == [[1.0, 3.0]] * 3
    assert batch.qids == [0, 1, 2] and batch.video_ids == ["v00", "v01", "v02"]
    with pytest.raises(InputError, match="empty list"):
        collate_samples([])
    store.close()


def test_missing_video_names_the_query_the_video_and_the_file(world: Path, encoder) -> None:
    store = open_feature_store(world / "features.h5")
    records = [record(0, "v00", "red"), record(7, "nope", "red"), record(8, "gone", "red")]
    bank = SentenceBank(encoder, ["red"])
    with pytest.raises(InputError, match=r"train\.jsonl: qid 7 asks about video 'nope', which is not in the feature "
                                         r"file .*features\.h5 \(1 more missing videos\).*skip_missing_videos"):
        GroundingDataset(records, store, bank, NUM_CLIPS, source="train.jsonl")
    dataset = GroundingDataset(records, store, bank, NUM_CLIPS, split="val", skip_missing_videos=True)
    assert len(dataset) == 1
    assert [(q.qid, q.video_id, q.split) for q in dataset.skipped] == [(7, "nope", "val"), (8, "gone", "val")]
    with pytest.raises(InputError, match="no queries left for split 'val'"):
        GroundingDataset(records[1:], store, bank, NUM_CLIPS, split="val", skip_missing_videos=True)
    store.close()


def test_val_split_holds_out_whole_videos_by_seed() -> None:
    records = [record(i, f"vid{i // 2}", "red") for i in range(20)]  # 10 videos, 2 queries each
    train, val = split_by_videos(records, 0.2, seed=3)
    assert len(val) == 4 and len(train) == 16
    assert {r.video_id for r in train}.isdisjoint({r.video_id for r in val})
    again_train, again_val = split_by_videos(list(reversed(records)), 0.2, seed=3)
    assert {r.qid for r in again_val} == {r.qid for r in val}  # file order does not matter
    with pytest.raises(InputError, match="needs at least 2"):
        split_by_videos(records[:2], 0.5, seed=0)


def test_val_split_depends_on_the_seed() -> None:
    records = [record(i, f"vid{i:02d}", "red") for i in range(40)]
    held_out = {frozenset(r.video_id for r in split_by_videos(records, 0.1, seed)[1]) for seed in range(6)}
    assert len(held_out) > 1
    assert all(len(videos) == 4 for videos in held_out)
    assert len(split_by_videos(records, 0.01, seed=0)[1]) == 1  # at least one video
