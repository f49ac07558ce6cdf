"""Multi-positive truth of the rendered world: relevance on whole plans, from manifests (versions 1 and 2), the
files `grounding synth` writes, `--relevance-only`, and the round trip through `grounding evaluate`.

No video is rendered: worlds are written from plans (annotations + manifest), which is all relevance needs.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from grounding.cli.main import main
from grounding.data.annotations import read_annotations
from grounding.errors import InputError
from grounding.eval.metrics import evaluate
from grounding.eval.predictions import CorpusMoments, Predictions
from grounding.eval.relevance import read_relevance
from grounding.video.synth.dataset import (
    SPLITS,
    DatasetPlan,
    SynthConfig,
    annotation_lines,
    manifest_payload,
    plan_dataset,
    relevance_path,
    write_world_relevance,
)
from grounding.video.synth.relevance import Phrase, QueryMeaning, relevance_lines, summarize, world_from_manifest
from grounding.video.synth.world import named_colour


@lru_cache(maxsize=None)
def plan(seed: int, num_videos: int) -> DatasetPlan:
    return plan_dataset(SynthConfig(seed=seed, num_videos=num_videos))


def brute_force_truth(p: DatasetPlan, video_id: str, query_index: int) -> dict[str, list[tuple[float, float]]]:
    """The rule of the docs, as plain loops over every script: {video: windows} where the query is true."""
    script = next(s for s in p.scripts if s.video_id == video_id)
    query = p.queries[video_id][query_index]

    def look(s, e):  # what a clause says of event e of script s
        return (named_colour(s.objects, s.events, e), s.objects[e.obj].shape, e.action, e.target_colour)

    wanted = look(script, script.events[query.event])
    first = None if query.after is None else look(script, script.events[query.after])
    truth = {}
    for other in p.scripts:
        windows = [
            (e.start, e.end)
            for e in other.events
            if look(other, e) == wanted
            and (first is None or any(look(other, a) == first and a.end <= e.start for a in other.events))
        ]
        if windows:
            truth[other.video_id] = windows
    return truth


def parsed(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def test_relevance_on_a_whole_plan_follows_the_rule_and_holds_the_own_moment() -> None:
    p = plan(4, 300)
    world = p.world()
    ordered = multi = 0
    for split in SPLITS:
        annotated = annotation_lines(p, split)
        items = parsed(relevance_lines(world, split))
        assert len(items) == len(annotated)
        positions = [(s.video_id, i) for s in p.scripts if s.split == split for i in range(len(p.queries[s.video_id]))]
        for qid, (item, line, (video_id, index)) in enumerate(zip(items, annotated, positions)):
            head, sentence = line.split("##")
            vid, start, end = head.split()
            assert (item["qid"], item["vid"], item["query"]) == (qid, vid, sentence) and vid == video_id
            relevant = {entry["vid"]: [tuple(w) for w in entry["windows"]] for entry in item["relevant"]}
            assert (float(start), float(end)) in relevant[vid]  # the own video, with its annotated window
            assert relevant == brute_force_truth(p, video_id, index)
            assert [entry["vid"] for entry in item["relevant"]] == sorted(relevant)
            ordered += p.queries[video_id][index].after is not None
            multi += len(relevant) > 1
    assert ordered > 50 and multi > 500


def test_ordered_query_is_true_only_where_the_first_event_ends_before_the_second_starts() -> None:
    red_spin, blue_grow = Phrase("red", "circle", "spin"), Phrase("blue", "star", "grow")
    world = plan(4, 20).world()
    world.events = {
        "v1": [(red_spin, 0.0, 2.0), (blue_grow, 2.0, 5.0)],  # ends exactly when the other starts: true
        "v2": [(blue_grow, 0.0, 3.0), (red_spin, 2.0, 6.0)],  # the wrong way round: false
        "v3": [(red_spin, 1.0, 4.0), (blue_grow, 3.0, 6.0)],  # overlapping: false
        "v4": [(blue_grow, 8.0, 9.0), (red_spin, 1.0, 4.0)],  # listed out of order, still true
    }
    world._index.clear()
    assert world.relevant(QueryMeaning(blue_grow, red_spin)) == {"v1": [(2.0, 5.0)], "v4": [(8.0, 9.0)]}
    assert set(world.relevant(QueryMeaning(blue_grow))) == {"v1", "v2", "v3", "v4"}
    assert world.relevant(QueryMeaning(Phrase("red", "circle", "change-colour", "blue"))) == {}


def test_the_manifest_stores_each_querys_meaning_and_rebuilds_the_same_relevance() -> None:
    p = plan(4, 300)
    manifest = json.loads(json.dumps(manifest_payload(p, complete=True)))
    first = manifest["videos"]["syn00000"]["queries"][0]
    assert set(first["meaning"]) == {"event", "after"}
    assert set(first["meaning"]["event"]) == {"colour", "shape", "action", "target_colour"}
    rebuilt = world_from_manifest(manifest, "manifest.json")
    for split in SPLITS:
        assert relevance_lines(rebuilt, split) == relevance_lines(p.world(), split)


def version_1(manifest: dict) -> dict:
    """The manifest as generator version 1 wrote it: no meanings."""
    old = copy.deepcopy(manifest)
    old["generator_version"] = 1
    for video in old["videos"].values():
        for query in video["queries"]:
            del query["meaning"]
    return old


def test_a_version_1_manifest_gives_the_same_relevance() -> None:
    p = plan(4, 300)
    manifest = json.loads(json.dumps(manifest_payload(p, complete=True)))
    rebuilt = world_from_manifest(version_1(manifest), "manifest.json")
    for split in SPLITS:
        assert relevance_lines(rebuilt, split) == relevance_lines(p.world(), split)


def test_a_stored_meaning_that_contradicts_the_events_is_refused() -> None:
    manifest = json.loads(json.dumps(manifest_payload(plan(4, 20), complete=True)))
    manifest["videos"]["syn00003"]["queries"][1]["meaning"]["event"]["colour"] = "white"
    manifest["videos"]["syn00003"]["queries"][1]["meaning"]["event"]["shape"] = "cross"
    with pytest.raises(InputError, match=r"m\.json: video syn00003 query 1: its stored meaning .* regenerate"):
        world_from_manifest(manifest, "m.json")


def write_world(folder: Path, p: DatasetPlan, manifest: dict | None = None) -> Path:
    """A world folder as grounding synth leaves it, without the videos: annotations, durations, manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (folder / f"{split}.txt").write_text("".join(line + "\n" for line in annotation_lines(p, split)))
    rows = "".join(f"{s.video_id},{s.duration:.2f}\n" for s in p.scripts)
    (folder / "durations.csv").write_text("id,length\n" + rows)
    (folder / "manifest.json").write_text(json.dumps(manifest or manifest_payload(p, complete=True), indent=1))
    return folder


@pytest.mark.parametrize("version", [1, 2])
def test_relevance_only_writes_the_files_of_an_existing_world(
    version: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = plan(4, 60)
    manifest = manifest_payload(p, complete=True)
    world = write_world(tmp_path / "world", p, version_1(manifest) if version == 1 else manifest)
    before = {path.name: path.read_bytes() for path in world.iterdir()}
    code = main(["synth", "--relevance-only", "--out", str(world), "--relevance-dir", str(tmp_path / "rel"),
                 "--json", str(tmp_path / "summary.json")])  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    assert "test: " in stdout and "true of more than one video" in stdout
    assert {path.name: path.read_bytes() for path in world.iterdir()} == before  # nothing written into the world
    for split in SPLITS:
        written = relevance_path(tmp_path / "rel", split).read_text().splitlines()
        assert written == relevance_lines(p.world(), split)
    summary = json.loads((tmp_path / "summary.json").read_text())["relevance"]
    assert [item["split"] for item in summary] == list(SPLITS)
    assert summary[1] == summarize(p.world(), "test").__dict__
    assert main(["synth", "--relevance-only", "--out", str(world)]) == 0  # default: into the world folder
    assert relevance_path(world, "test").read_text() == relevance_path(tmp_path / "rel", "test").read_text()


def test_relevance_only_refuses_what_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(4, 20)
    world = write_world(tmp_path / "world", p)
    cases = [
        (["--out", str(world), "--seed", "3"], "--relevance-only reads the world from --out's manifest.json; drop"),
        (["--out", str(tmp_path / "empty")], "no manifest.json; point --out at a folder grounding synth wrote"),
    ]
    for argv, message in cases:
        assert main(["synth", "--relevance-only", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    lines = (world / "test.txt").read_text().splitlines()
    (world / "test.txt").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(InputError, match=r"test\.txt:1: .* but manifest\.json says .* different worlds"):
        write_world_relevance(world, tmp_path / "rel")
    manifest = json.loads((world / "manifest.json").read_text())
    (world / "manifest.json").write_text(json.dumps({**manifest, "generator_version": 9}))
    with pytest.raises(InputError, match=r"versions 1, 2 only"):
        write_world_relevance(world, tmp_path / "rel")
    assert main(["synth", "--out", str(tmp_path / "x"), "--relevance-dir", str(tmp_path / "rel")]) == 2
    assert "--relevance-dir goes with --relevance-only" in capsys.readouterr().err


def test_relevance_files_round_trip_through_evaluate(tmp_path: Path) -> None:
    p = plan(4, 60)
    world = write_world(tmp_path / "world", p)
    write_world_relevance(world)
    annotations = read_annotations(world / "test.txt", durations=[world / "durations.csv"])
    relevance = read_relevance(relevance_path(world, "test"), annotations)
    assert len(relevance.videos) == len(annotations.records)
    # a ranking that puts another true video first: a miss with the own video only, a hit with relevance
    rankings, corpus = {}, {}
    for record in annotations.records:
        others = [vid for vid in relevance.truth(record.qid) if vid != record.video_id]
        if others:
            rankings[record.qid] = [others[0], record.video_id]
            start, end = relevance.truth(record.qid)[others[0]][0]
            corpus[record.qid] = CorpusMoments((others[0],), np.array([[start, end, 1.0]]))
    predictions = Predictions(rankings=rankings, corpus_moments=corpus)
    single, multi = evaluate(annotations, predictions), evaluate(annotations, predictions, relevant=relevance)
    share = 100.0 * len(rankings) / len(annotations.records)
    assert single["VR@1"] == 0.0 and multi["VR@1"] == pytest.approx(share) and share > 20
    assert single["VCMR_R1@0.7"] == 0.0 and multi["VCMR_R1@0.7"] == pytest.approx(share)
