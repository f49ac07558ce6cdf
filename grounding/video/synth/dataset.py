"""Build a rendered-world dataset folder: videos, Charades-STA annotations, durations and a manifest.

Layout of ``out_dir``::

    videos/syn00000.mp4 ...     H.264, yuv420p, ``width x height`` at ``fps``
    train.txt test.txt test_novel.txt   ``VID START END##sentence`` (seconds, 2 decimals), Charades-STA format
    train.relevant.jsonl ...    per query of the split, every video of the world where it is true, with windows
    durations.csv               ``id,length`` (seconds, 2 decimals), every video
    manifest.json               config, counts, vocabulary, held-out compositions, splits, every script and
                                what each query means

Split rule: ``n_test = n_novel = max(1, round(0.15 * N))`` (``n_novel = 0`` when N < 3, ``n_test = 0`` when
N < 2) and the rest is ``train``; a permutation drawn from ``[seed, 2]`` orders the video indices, and the
first ``n_train`` of it are train, the next ``n_test`` test, the last ``n_novel`` test_novel.

Everything is a function of the :class:`SynthConfig`: each video's script and sentences come from generators
seeded by ``(seed, stream, index)``, so ``workers`` changes only the speed. Rendering resumes: a video whose
mp4 exists is complete (each is written to a hidden temporary name, then renamed) and is skipped when the
folder's manifest has the same config. :func:`write_world_relevance` writes the relevance files of an already
rendered world (generator version 1 or 2) from its manifest alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grounding.errors import InputError, require_package
from grounding.files import TEMPORARY_MARK, write_text_atomic
from grounding.video.synth.language import SynthQuery, make_queries, vocabulary_words
from grounding.video.synth.relevance import (
    RelevanceSummary,
    World,
    query_meaning,
    relevance_lines,
    summarize,
    world_from_manifest,
    world_from_scripts,
)
from grounding.video.synth.render import render_video
from grounding.video.synth.world import (
    ACTIONS,
    COLOURS,
    SHAPES,
    Triple,
    VideoScript,
    WorldSettings,
    choose_held_out_triples,
    duration_step,
    generate_script,
    language_rng,
    split_rng,
    video_rng,
)

GENERATOR = "grounding.video.synth"
# Bump whenever the same config would produce different scripts, sentences or pixels. Version 2: a change-colour
# never turns an object into the look of another object of its shape (15 of seed 1's 1000 videos differ), and
# the manifest says what each query means.
GENERATOR_VERSION = 2
RELEVANCE_VERSIONS = (1, 2)  # manifests whose relevance files write_world_relevance can write
SPLITS: tuple[str, ...] = ("train", "test", "test_novel")
SPLIT_FRACTION = 0.15  # of the videos each for test and test_novel; the rest is train
MANIFEST_NAME = "manifest.json"
RELEVANCE_SUFFIX = ".relevant.jsonl"  # test.relevant.jsonl beside test.txt
DURATIONS_NAME = "durations.csv"
VIDEO_DIR = "videos"


@dataclass(frozen=True)
class SynthConfig:
    """What ``grounding synth`` renders. Times in seconds, sizes in pixels.

    Attributes:
        seed: master seed of every random choice.
        num_videos: N, at least 1.
        width, height: frame size; even numbers (H.264 4:2:0) of at least 64.
        fps: frames per second, a whole number from 1 to 60.
        min_duration, max_duration: video lengths are drawn uniformly from this range (test code shortens it).
        min_events, max_events: events per video, 2..5.
        held_out_fraction: share of all colour x shape x action compositions kept for ``test_novel``.
    """

    seed: int = 0
    num_videos: int = 300
    width: int = 160
    height: int = 160
    fps: int = 8
    min_duration: float = 15.0
    max_duration: float = 40.0
    min_events: int = 2
    max_events: int = 5
    held_out_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.num_videos < 1:
            raise InputError(f"--videos must be at least 1, got {self.num_videos}; ask for one video or more.")
        for name, value in (("width", self.width), ("height", self.height)):
            if value < 64 or value % 2:
                raise InputError(
                    f"--size: frame {name} must be an even number >= 64 (H.264 4:2:0 needs even sizes), got {value}."
                )
        if not 1 <= self.fps <= 60:
            raise InputError(f"--fps must be a whole number from 1 to 60, got {self.fps}.")
        step = duration_step(self.fps)
        if not step <= self.min_duration <= self.max_duration or math.ceil(
            self.min_duration / step - 1e-9
        ) > math.floor(self.max_duration / step + 1e-9):
            raise InputError(
                f"durations: need {step} <= min_duration <= max_duration seconds with a multiple of {step} s "
                f"(a whole number of frames at {self.fps} fps) between them, "
                f"got {self.min_duration} and {self.max_duration}."
            )
        if not 2 <= self.min_events <= self.max_events <= 5:
            raise InputError(f"events per video: need 2 <= min <= max <= 5, got {self.min_events}..{self.max_events}.")
        if not 0.0 < self.held_out_fraction <= 0.3:
            raise InputError(f"held_out_fraction must be in (0, 0.3], got {self.held_out_fraction}.")

    def world_settings(self) -> WorldSettings:
        return WorldSettings(
            fps=self.fps,
            min_duration=self.min_duration,
            max_duration=self.max_duration,
            min_events=self.min_events,
            max_events=self.max_events,
            min_event_length=min(1.0, self.min_duration / 4),
        )


@dataclass
class DatasetPlan:
    """The scripts and queries of a dataset, before any pixel is drawn (cheap: milliseconds per video)."""

    config: SynthConfig
    held_out: frozenset[Triple]
    scripts: list[VideoScript]
    queries: dict[str, list[SynthQuery]]

    def split_ids(self, split: str) -> list[str]:
        return [script.video_id for script in self.scripts if script.split == split]

    def world(self) -> World:
        """What relevance needs of the plan: every event's phrase and every query's meaning."""
        return world_from_scripts(self.scripts, self.queries)


@dataclass
class SynthSummary:
    """What :func:`build_dataset` did: counts, and the seconds it spent rendering."""

    out_dir: str
    rendered: int
    skipped: int
    seconds: float
    videos: dict[str, int] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def video_id(index: int) -> str:
    return f"syn{index:05d}"


def assign_splits(num_videos: int, seed: int) -> list[str]:
    """The split of each video index (see the module docstring for the rule)."""
    count = round(SPLIT_FRACTION * num_videos)
    n_novel = max(1, count) if num_videos >= 3 else 0
    n_test = max(1, count) if num_videos >= 2 else 0
    n_train = num_videos - n_test - n_novel
    order = split_rng(seed).permutation(num_videos)
    splits = [""] * num_videos
    for rank, index in enumerate(order):
        splits[int(index)] = "train" if rank < n_train else "test" if rank < n_train + n_test else "test_novel"
    return splits


def plan_dataset(config: SynthConfig) -> DatasetPlan:
    """Draw every script and sentence of the dataset ``config`` describes."""
    held_out = choose_held_out_triples(config.seed, config.held_out_fraction)
    settings = config.world_settings()
    scripts: list[VideoScript] = []
    queries: dict[str, list[SynthQuery]] = {}
    for index, split in enumerate(assign_splits(config.num_videos, config.seed)):
        vid = video_id(index)
        script = generate_script(video_rng(config.seed, index), vid, index, split, settings, held_out)
        scripts.append(script)
        queries[vid] = make_queries(language_rng(config.seed, index), script, held_out)
    return DatasetPlan(config=config, held_out=held_out, scripts=scripts, queries=queries)


def annotation_lines(plan: DatasetPlan, split: str) -> list[str]:
    """Charades-STA lines ``VID START END##sentence`` of one split, in video order."""
    lines = []
    for script in plan.scripts:
        if script.split == split:
            for query in plan.queries[script.video_id]:
                lines.append(f"{script.video_id} {query.start:.2f} {query.end:.2f}##{query.sentence}")
    return lines


def manifest_payload(plan: DatasetPlan, complete: bool) -> dict[str, Any]:
    """The manifest: enough to reproduce and to audit the dataset (no timings, so it is deterministic too)."""
    config = plan.config
    videos = {}
    for script in plan.scripts:
        videos[script.video_id] = {
            "split": script.split,
            "duration": script.duration,
            "num_frames": round(script.duration * config.fps),
            "objects": [asdict(obj) for obj in script.objects],
            "events": [asdict(event) for event in script.events],
            "queries": [
                {**asdict(query), "meaning": query_meaning(script, query).to_json()}
                for query in plan.queries[script.video_id]
            ],
            "background": script.background.kind,
        }
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "config": asdict(config),
        "complete": complete,
        "counts": {
            "videos": {split: len(plan.split_ids(split)) for split in SPLITS},
            "queries": {split: len(annotation_lines(plan, split)) for split in SPLITS},
            "events": sum(len(script.events) for script in plan.scripts),
        },
        "vocabulary": {
            "colours": list(COLOURS),
            "shapes": list(SHAPES),
            "actions": list(ACTIONS),
            "words": vocabulary_words(),
        },
        "held_out_triples": [list(triple) for triple in sorted(plan.held_out)],
        "splits": {split: plan.split_ids(split) for split in SPLITS},
        "videos": videos,
    }


def _write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")


def _check_out_dir(out_dir: Path, config: SynthConfig, overwrite: bool) -> bool:
    """Decide what to do with an existing ``out_dir``; returns True when finished videos may be reused."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: exists and is not a folder; pick another folder.")
    manifest_path = out_dir / MANIFEST_NAME
    if not manifest_path.exists():
        if overwrite or not any(out_dir.iterdir()):
            return False
        raise InputError(
            f"--out {out_dir}: folder exists, is not empty and has no {MANIFEST_NAME}; "
            "pick another folder, or pass --overwrite to write into it."
        )
    wanted = asdict(config)
    try:
        existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        seen = existing.get("config") or {}
        differences = [
            f"{key} {seen.get(key)!r} there vs {value!r} here" for key, value in wanted.items() if seen.get(key) != value
        ]
        if (existing.get("generator"), existing.get("generator_version")) != (GENERATOR, GENERATOR_VERSION):
            differences.append(
                f"generator {existing.get('generator')!r} version {existing.get('generator_version')!r} there "
                f"vs {GENERATOR!r} version {GENERATOR_VERSION} here"
            )
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as error:
        differences = [f"its {MANIFEST_NAME} is unreadable ({error})"]
    if not differences:
        return not overwrite
    if overwrite:
        return False
    raise InputError(
        f"--out {out_dir}: holds a dataset with another config ({'; '.join(differences)}); "
        "pick another folder or pass --overwrite."
    )


def relevance_path(folder: str | os.PathLike[str], split: str) -> Path:
    """Where a world folder keeps ``split``'s relevance file: ``<folder>/<split>.relevant.jsonl``."""
    return Path(folder) / f"{split}{RELEVANCE_SUFFIX}"


def write_world_relevance(
    world_dir: str | os.PathLike[str], to_dir: str | os.PathLike[str] | None = None
) -> list[RelevanceSummary]:
    """Write the relevance files of the world in ``world_dir`` from its ``manifest.json`` (no rendering).

    Works for generator versions 1 and 2 (see :func:`~grounding.video.synth.relevance.world_from_manifest`).
    The files go to ``to_dir`` (default ``world_dir``; created if missing). Each split's queries are checked,
    line by line, against the split's annotation file in ``world_dir`` when it is there, so line i of a
    relevance file is qid i of that file.

    Returns:
        one :class:`RelevanceSummary` per split, in ``SPLITS`` order.

    Raises:
        InputError: no manifest, one of another generator or version, or annotations that disagree with it.
    """
    folder = Path(world_dir)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(f"--out {folder}: no {MANIFEST_NAME}; point --out at a folder grounding synth wrote.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{manifest_path}: unreadable ({error}); regenerate the world.") from None
    found = (manifest.get("generator"), manifest.get("generator_version")) if isinstance(manifest, dict) else None
    if found is None or found[0] != GENERATOR or found[1] not in RELEVANCE_VERSIONS:
        raise InputError(
            f"{manifest_path}: generator {found!r}; relevance files can be written for {GENERATOR!r} versions "
            f"{', '.join(map(str, RELEVANCE_VERSIONS))} only; regenerate the world with this version."
        )
    world = world_from_manifest(manifest, str(manifest_path))
    out = folder if to_dir is None else Path(to_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for split in SPLITS:
        queries = world.split_queries(split)
        annotations = folder / f"{split}.txt"
        if annotations.is_file():
            expected = [f"{q.video_id} {q.window[0]:.2f} {q.window[1]:.2f}##{q.sentence}" for q in queries]
            found_lines = annotations.read_text(encoding="utf-8").splitlines()
            for number, (line, want) in enumerate(zip(found_lines + [""] * len(expected), expected), start=1):
                if line != want:
                    raise InputError(
                        f"{annotations}:{number}: {line!r}, but {MANIFEST_NAME} says {want!r}; the annotation file "
                        "and the manifest are of different worlds: regenerate the world."
                    )
            if len(found_lines) != len(expected):
                raise InputError(
                    f"{annotations}: {len(found_lines)} lines, but {MANIFEST_NAME} has {len(expected)} {split} "
                    "queries; regenerate the world."
                )
        write_text_atomic(relevance_path(out, split), "".join(line + "\n" for line in relevance_lines(world, split)))
        summaries.append(summarize(world, split))
    return summaries


def _render_task(task: tuple[VideoScript, str, int, int, int]) -> str:
    script, path, width, height, fps = task
    render_video(script, path, width, height, fps)
    return script.video_id


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def build_dataset(
    out_dir: str | os.PathLike[str],
    config: SynthConfig,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Render the dataset ``config`` describes into ``out_dir`` (layout in the module docstring).

    Annotations, durations and the manifest (``complete: false``) are written first; videos then render in
    ``workers`` processes (default ``min(2, cpu count)``); the manifest is rewritten with ``complete: true``
    at the end. Raises :class:`InputError` when ``out_dir`` holds something else and ``overwrite`` is False.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}.")
    require_package("av", "grounding synth (writing H.264 mp4 files)", "video")
    out = Path(out_dir)
    reuse = _check_out_dir(out, config, overwrite)
    plan = plan_dataset(config)
    video_dir = out / VIDEO_DIR
    video_dir.mkdir(parents=True, exist_ok=True)
    # temporaries of killed renders: grounding.files names (".syn00001.mp4.<pid>.tmp.mp4"), and older ones
    for stale in [*video_dir.glob(f".*{TEMPORARY_MARK}.mp4"), *video_dir.glob(".*.partial.mp4")]:
        stale.unlink(missing_ok=True)
    if not reuse:  # videos of another config (or of an --overwrite) must not be taken as finished
        for old in video_dir.glob("syn*.mp4"):
            old.unlink()

    world = plan.world()
    for split in SPLITS:
        lines = annotation_lines(plan, split)
        write_text_atomic(out / f"{split}.txt", "".join(line + "\n" for line in lines))
        write_text_atomic(relevance_path(out, split), "".join(line + "\n" for line in relevance_lines(world, split)))
    durations = io.StringIO()
    writer = csv.writer(durations, lineterminator="\n")
    writer.writerow(["id", "length"])
    for script in plan.scripts:
        writer.writerow([script.video_id, f"{script.duration:.2f}"])
    write_text_atomic(out / DURATIONS_NAME, durations.getvalue())
    _write_json_atomic(out / MANIFEST_NAME, manifest_payload(plan, complete=False))

    tasks = [
        (script, str(video_dir / f"{script.video_id}.mp4"), config.width, config.height, config.fps)
        for script in plan.scripts
        if not (video_dir / f"{script.video_id}.mp4").exists()
    ]
    began = time.perf_counter()
    _run_tasks(tasks, workers, progress)
    seconds = time.perf_counter() - began
    _write_json_atomic(out / MANIFEST_NAME, manifest_payload(plan, complete=True))
    return SynthSummary(
        out_dir=str(out),
        rendered=len(tasks),
        skipped=len(plan.scripts) - len(tasks),
        seconds=round(seconds, 2),
        videos={split: len(plan.split_ids(split)) for split in SPLITS},
        queries={split: len(annotation_lines(plan, split)) for split in SPLITS},
    )


def _run_tasks(tasks: list[tuple[VideoScript, str, int, int, int]], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=len(tasks), desc="synth", unit="video", file=sys.stderr, disable=not progress) as bar:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                _render_task(task)
                bar.update(1)
            return
        # spawn, not fork: the parent may hold torch's threads, which fork does not copy safely.
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(tasks))) as pool:
            for _ in pool.imap_unordered(_render_task, tasks, chunksize=1):
                bar.update(1)
