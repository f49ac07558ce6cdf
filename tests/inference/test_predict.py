"""grounding.inference.predict and ``grounding predict``: checkpoint x annotations -> windows, batched by video,
the same numbers as the trainer's own evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from grounding.cli.main import main
from grounding.data.records import QueryRecord
from grounding.errors import InputError
from grounding.inference.predict import group_by_video, plan_batches, predict_moments
from grounding.model import GroundingConfig, GroundingModel, decode_spans
from grounding.text.language_graph import batch_edge_index
from tests.training import TINY_MODEL, single_thread, write_tiny_config, write_tiny_world  # noqa: F401 (autouse)


def _record(qid: int, video_id: str, sentence: str = "a red ball jumps") -> QueryRecord:
    return QueryRecord(qid=qid, video_id=video_id, duration=12.0, windows=((1.0, 4.0),), sentence=sentence)


def test_batches_hold_whole_videos_and_cut_only_a_video_bigger_than_a_batch() -> None:
    records = [_record(0, "a"), _record(1, "b"), _record(2, "a"), _record(3, "c"), _record(4, "c"), _record(5, "c")]
    groups = group_by_video(records)
    assert [(g.video_id, [r.qid for r in g.records]) for g in groups] == [("a", [0, 2]), ("b", [1]), ("c", [3, 4, 5])]
    batches = plan_batches(groups, batch_size=3)
    assert [[(g.video_id, [r.qid for r in g.records]) for g in batch] for batch in batches] == [
        [("a", [0, 2]), ("b", [1])], [("c", [3, 4, 5])],
    ]
    cut = plan_batches(groups, batch_size=2)
    assert [[(g.video_id, len(g.records)) for g in batch] for batch in cut] == [
        [("a", 2)], [("b", 1)], [("c", 2)], [("c", 1)],
    ]
    with pytest.raises(InputError, match="batch size must be an integer >= 1"):
        plan_batches(groups, 0)


class _Sentences:
    def __init__(self, dim: int) -> None:
        self.dim, self.cache = dim, {}

    def get(self, sentence: str) -> tuple[torch.Tensor, torch.Tensor]:
        if sentence not in self.cache:
            length = len(sentence.split())
            generator = torch.Generator().manual_seed(len(sentence))
            edges = torch.stack([torch.arange(length - 1), torch.arange(1, length)])
            self.cache[sentence] = (torch.randn(length, self.dim, generator=generator), edges)
        return self.cache[sentence]


def test_one_encoding_per_video_gives_what_a_forward_per_query_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = GroundingModel(GroundingConfig.from_dict(TINY_MODEL)).eval()
    generator = torch.Generator().manual_seed(1)
    features = {f"v{i}": torch.randn(8, 6, generator=generator) for i in range(5)}
    sentences = _Sentences(TINY_MODEL["text"]["input_dim"])
    texts = ["a red ball jumps", "the blue box spins", "a ball", "the blue box spins then a red ball jumps"]
    records = [_record(q, f"v{(q * 3) % 5}", texts[q % 4]) for q in range(17)]
    encoded_videos: list[int] = []
    original = model.encode_clips
    monkeypatch.setattr(model, "encode_clips", lambda f, m: encoded_videos.append(f.shape[0]) or original(f, m))
    found = predict_moments(model, records, features.__getitem__, sentences, top_k=5, nms=0.5, batch_size=6)
    assert sum(encoded_videos) <= 5 + 3  # each video once per batch it appears in, not once per query
    assert sorted(found) == list(range(17))
    with torch.no_grad():
        for record in records:  # the plain forward of one (video, query) pair
            words, edges = sentences.get(record.sentence)
            output = GroundingModel.forward(
                model, features[record.video_id][None], torch.ones(1, 8, dtype=torch.bool), words[None],
                torch.ones(1, len(words), dtype=torch.bool), batch_edge_index([edges], len(words)),
            )
            expected = np.asarray([list(span) for span in decode_spans(output, [12.0], 5, 0.5)[0]])
            np.testing.assert_allclose(found[record.qid], expected, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("predict")
    world = write_tiny_world(folder / "world", num_videos=14, num_test=4)
    config = write_tiny_config(folder / "tiny.yaml", world, folder / "run", epochs=3, eval_batch_size=3)
    assert main(["train", "--config", str(config)]) == 0
    return world, folder / "run"


def _predict(world: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["predict", "--checkpoint", str(checkpoint), "--annotations", str(world / "test.jsonl"),
                 "--features", str(world / "features.h5"), "--out", str(out), "--no-progress", *extra])


def test_predict_and_evaluate_reproduce_the_trainers_test_figures_exactly(trained, tmp_path: Path, capsys) -> None:
    world, run = trained
    assert _predict(world, run, tmp_path / "test.jsonl", "--evaluate", "--json", str(tmp_path / "scores.json")) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "R@1" in printed
    best = json.loads((run / "best" / "metrics.json").read_text())["metrics"]["test"]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert {key: scores[key] for key in best} == best  # every metric, to the last digit
    assert main(["evaluate", "--annotations", str(world / "test.jsonl"), "--predictions", str(tmp_path / "test.jsonl"),
                 "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert {key: again[key] for key in best} == best
    lines = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert sorted(line["qid"] for line in lines) == [10, 11, 12, 13]  # the annotation file's own qids
    assert all(len(line["pred_relevant_windows"]) <= 10 for line in lines)


def test_missing_videos_are_named_or_skipped_as_misses(trained, tmp_path: Path, capsys) -> None:
    world, run = trained
    annotations = tmp_path / "more.jsonl"
    rows = (world / "test.jsonl").read_text().splitlines()
    extra = [json.dumps({**json.loads(rows[0]), "qid": 100 + i, "vid": f"absent{i}"}) for i in range(7)]
    annotations.write_text("\n".join(rows + extra) + "\n")
    args = ["predict", "--checkpoint", str(run), "--annotations", str(annotations), "--features",
            str(world / "features.h5"), "--out", str(tmp_path / "p.jsonl"), "--no-progress"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "no features for 7 video(s)" in error and "absent0, absent1, absent2, absent3, absent4 and 2 more" in error
    assert "--skip-missing" in error and not (tmp_path / "p.jsonl").exists()
    assert main(args + ["--skip-missing", "--evaluate"]) == 0
    captured = capsys.readouterr()
    assert "skipped 7 queries of 7 videos without features (scored as misses)" in captured.err
    assert "4 of 11 queries" in captured.out


def test_no_nms_top_k_and_bad_flags(trained, tmp_path: Path, capsys) -> None:
    world, run = trained
    assert _predict(world, run, tmp_path / "raw.jsonl", "--no-nms", "--top-k", "25") == 0
    lines = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    assert all(len(line["pred_relevant_windows"]) == 25 for line in lines)  # no NMS: every candidate kept
    assert _predict(world, run, tmp_path / "x.jsonl", "--nms", "0.5", "--no-nms") == 2
    assert "contradict" in capsys.readouterr().err
    assert _predict(world, run, tmp_path / "x.jsonl", "--json", str(tmp_path / "s.json")) == 2
    assert "add --evaluate" in capsys.readouterr().err


OLD_CHECKPOINT = Path(__file__).parent / "fixtures" / "checkpoint-fb73319"


def test_a_checkpoint_saved_before_the_settings_had_one_home_loads_and_predicts_its_own_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The fixture is the best/ checkpoint of ``write_tiny_config(..., epochs=2, eval_batch_size=3)`` on
    ``write_tiny_world(Path("world"), num_videos=14, num_test=4)``, trained by the code of commit fb73319 (flat
    extraction keys in its pipeline metadata; its text encoder path is relative: glove:world/glove.txt)."""
    from grounding.inference import Grounder

    monkeypatch.chdir(tmp_path)
    world = write_tiny_world(Path("world"), num_videos=14, num_test=4)
    grounder = Grounder.from_pretrained(OLD_CHECKPOINT)
    assert grounder.pipeline.extraction.backbone == "test-backbone"
    assert grounder.pipeline.extraction.frame_size == 32
    assert main(["predict", "--checkpoint", str(OLD_CHECKPOINT), "--annotations", str(world / "test.jsonl"),
                 "--features", str(world / "features.h5"), "--out", "p.jsonl", "--batch-size", "3", "--evaluate",
                 "--json", "scores.json", "--no-progress"]) == 0
    expected = json.loads((OLD_CHECKPOINT / "metrics.json").read_text())["metrics"]["test"]  # the old trainer's
    scores = json.loads(Path("scores.json").read_text())
    assert {key: scores[key] for key in expected} == expected
