"""``grounding demo``: the whole path on a fresh rendered world, with the shipped model, in a few minutes.

Each step is a ``grounding`` command a user could type, printed before it runs (its own output goes to
``OUT/logs/STEP.log``): render a world the shipped model never saw (``synth``), extract its features with the
model's backbone (``extract``), predict and score the ``test`` and ``test_novel`` queries beside two blind baselines
(``predict``, ``baseline``; scored as ``evaluate`` scores them), ground three sentences of one video (the
:class:`~grounding.Grounder` API), index the world's videos and rank them for two sentences (``index``, the
:class:`~grounding.ranking.Ranker` API), and write ``OUT/report/index.html``. Every step resumes: a rerun after a
kill redoes only what is missing.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from grounding.errors import InputError

SPLITS = ("test", "test_novel")
METHODS = ("model", "shipped", "full-video", "moment-prior")  # "shipped": beside a model trained by --train
METHOD_LABELS = {"model": "shipped model", "shipped": "shipped model", "full-video": "full-video",
                 "moment-prior": "moment-prior"}
DEFAULT_VIDEOS = 60
DEFAULT_SEED = 2027
EXAMPLE_SENTENCES = 3
RANKED_SENTENCES = 2
RANKED_VIDEOS = 5
DEFAULT_TRAIN_EPOCHS = 20


@dataclass
class DemoSettings:
    """What :func:`run_demo` does.

    Attributes:
        out: the demo's folder (the world, features, predictions, index, logs and report go inside).
        videos: videos of the fresh world (its ``test`` and ``test_novel`` splits are 15 % of them each).
        seed: the world's seed; not the one the shipped model was trained on.
        checkpoint: a checkpoint to use instead of the shipped model (then any seed is allowed).
        train: train a small model of the shipped model's architecture on the world's training split (and fit it
            for ranking) and use it instead; the shipped model is still scored beside it, to say how much weaker
            it is.
        train_epochs: its epochs.
        progress: progress bars on stderr.
    """

    out: Path
    videos: int = DEFAULT_VIDEOS
    seed: int = DEFAULT_SEED
    checkpoint: Path | None = None
    train: bool = False
    train_epochs: int = DEFAULT_TRAIN_EPOCHS
    progress: bool = True


@dataclass
class GroundedSentence:
    """One sentence of the example video: its true moment, the model's top spans and its score curve."""

    sentence: str
    truth: tuple[float, float]
    spans: list[tuple[float, float, float]]
    curve_times: list[float]
    curve_scores: list[float]


@dataclass
class RankedRow:
    video_id: str
    probability: float
    span: tuple[float, float] | None
    relevant: bool


@dataclass
class DemoResult:
    """What the demo measured and showed (also the report's content)."""

    world: Path
    checkpoint: str
    seed: int
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # split -> method -> figures
    example_video: str = ""
    example_duration: float = 0.0
    examples: list[GroundedSentence] = field(default_factory=list)
    rankings: list[tuple[str, list[RankedRow]]] = field(default_factory=list)
    ranking_metrics: dict[str, float] = field(default_factory=dict)  # VR@k of the test sentences, their count
    trained: bool = False  # "model" is a model trained by --train ("shipped" is then the shipped model)
    seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None

    def video_path(self, video_id: str) -> Path:
        return self.world / "videos" / f"{video_id}.mp4"


def _command(out: Path, name: str, argv: Sequence[str], echo: Callable[[str], None]) -> None:
    """Run ``grounding ARGV`` in this process, its stdout into ``OUT/logs/NAME.log``; InputError if it fails."""
    from grounding.cli.main import main

    echo("$ grounding " + " ".join(argv))
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        status = main(list(argv))
    (logs / f"{name}.log").write_text(captured.getvalue(), encoding="utf-8")
    if status != 0:
        raise InputError(f"the demo's step '{name}' failed (exit {status}); its output is in {logs / f'{name}.log'}")


def _check(settings: DemoSettings) -> Path:
    from grounding.assets import SHIPPED_MODEL_WORLD_SEED, shipped_model_path

    if not 3 <= settings.videos <= 2000:
        raise InputError(f"--videos must be from 3 to 2000 (the test splits are 15 % of the world each), got {settings.videos}")
    if settings.train and settings.train_epochs < 1:
        raise InputError(f"--train-epochs must be >= 1, got {settings.train_epochs}")
    if settings.checkpoint is not None:
        return Path(settings.checkpoint)
    if settings.seed == SHIPPED_MODEL_WORLD_SEED:
        raise InputError(
            f"--seed {settings.seed} is the world the shipped model was trained on, so its figures would flatter it; "
            "pick another seed"
        )
    path = shipped_model_path()
    if not (path / "model.safetensors").is_file():
        raise InputError(f"the shipped model is missing from {path}; reinstall grounding, or pass --checkpoint")
    return path


def run_demo(settings: DemoSettings, echo: Callable[[str], None] = print) -> DemoResult:
    """Run every step (see the module doc) and return what it found; ``echo`` prints the narration."""
    from grounding.data.annotations import read_annotations
    from grounding.eval.metrics import evaluate
    from grounding.eval.predictions import read_predictions
    from grounding.inference import Grounder

    checkpoint = _check(settings)
    out = Path(settings.out)
    world = out / "world"
    features = world / "features.h5"
    durations = str(world / "durations.csv")
    quiet = [] if settings.progress else ["--no-progress"]
    label = str(checkpoint) if settings.checkpoint is not None else "the shipped model (grounding/assets/rendered-world-flow)"
    result = DemoResult(world=world, checkpoint=label, seed=settings.seed, trained=settings.train)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.seconds[name] = round(now - clock, 1)
        clock = now

    echo(f"1. a fresh rendered world: {settings.videos} videos, seed {settings.seed}")
    _command(out, "synth", ["synth", "--out", str(world), "--videos", str(settings.videos), "--seed",
                            str(settings.seed), *quiet], echo)
    grounder = Grounder.from_pretrained(checkpoint)
    extraction = grounder.pipeline.extraction
    if extraction.backbone is None:
        raise InputError(f"checkpoint {checkpoint}: it records no frame backbone, so the demo cannot extract features")
    flags = ["--backbone", extraction.backbone]
    for flag, value in (("--size", extraction.frame_size), ("--clip-seconds", extraction.clip_seconds),
                        ("--frames-per-clip", extraction.frames_per_clip), ("--resize", extraction.resize)):
        if value is not None:
            flags += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    _command(out, "extract", ["extract", str(world / "videos"), "--out", str(features), *flags, *quiet], echo)
    lap("world")
    shipped = checkpoint
    if settings.train:
        echo(f"1b. a small model trained here on the world's training split ({settings.train_epochs} epochs), then "
             "fitted for ranking")
        checkpoint = _train_small(out, world, features, shipped, settings, echo, quiet)
        grounder = Grounder.from_pretrained(checkpoint)
        result.checkpoint = f"a model trained by this demo ({checkpoint})"
        lap("train")

    echo("2. the model's moments for every test query, beside two blind baselines")
    predictions = out / "predictions"
    for split in SPLITS:
        annotations = str(world / f"{split}.txt")
        records = read_annotations(annotations, durations=[durations])
        if not records.records:
            echo(f"   ({split}: no queries in a world this small)")
            continue
        runs = {
            "model": ["predict", "--checkpoint", str(checkpoint), "--annotations", annotations, "--durations",
                      durations, "--features", str(features), "--out", str(predictions / f"model-{split}.jsonl"), *quiet],
            "shipped": ["predict", "--checkpoint", str(shipped), "--annotations", annotations, "--durations",
                        durations, "--features", str(features), "--out", str(predictions / f"shipped-{split}.jsonl"),
                        *quiet],
            "full-video": ["baseline", "--method", "full-video", "--test", annotations, "--durations", durations,
                           "--out", str(predictions / f"full-video-{split}.jsonl")],
            "moment-prior": ["baseline", "--method", "moment-prior", "--train", str(world / "train.txt"), "--test",
                             annotations, "--durations", durations, "--out",
                             str(predictions / f"moment-prior-{split}.jsonl")],
        }
        result.metrics[split] = {}
        for method in METHODS:
            if method == "shipped" and not settings.train:
                continue
            _command(out, f"{method}-{split}", runs[method], echo)
            scored = evaluate(records, read_predictions(predictions / f"{method}-{split}.jsonl"))
            result.metrics[split][method] = {key: float(value) for key, value in scored.items()}
    lap("predict")

    echo("3. three sentences grounded in one test video")
    _ground_examples(result, grounder, features, read_annotations(str(world / "test.txt"), durations=[durations]))
    lap("ground")

    if "ranking" in grounder.model.pretrained_metadata:
        echo("4. the world's videos ranked for two sentences")
        index = out / "index"
        resume = ["--add"] if (index / "index.json").is_file() else []  # a rerun: adds only what is missing
        _command(out, "index", ["index", "--checkpoint", str(checkpoint), "--features", str(features), "--durations",
                                durations, "--out", str(index), *resume, *quiet], echo)
        _rank_examples(result, index, world)
        lap("rank")
    else:
        echo("4. (skipped: this checkpoint was not fitted for ranking; see grounding fit-ranker)")

    from grounding.report.page import write_demo_report

    echo("5. the report")
    result.report = write_demo_report(result, out / "report")
    lap("report")
    return result


def _train_small(out: Path, world: Path, features: Path, shipped: Path, settings: DemoSettings,
                 echo: Callable[[str], None], quiet: list[str]) -> Path:
    """Train the shipped model's architecture on the world's training split (``OUT/train.yaml``, ``OUT/run``), fit
    it for ranking (``OUT/run/ranker``), and return that checkpoint. A finished run is reused."""
    import json

    import yaml

    model = json.loads((shipped / "config.json").read_text(encoding="utf-8"))["config"]
    model.update(video_embedding_pooling="mean", video_embedding_features=False)  # fit-ranker sets its own
    config = {
        "model": model,
        "data": {"root": str(world), "train": "train.txt", "val": None, "val_fraction": 0.1, "test": "test.txt",
                 "extra_eval": {"test_novel": "test_novel.txt"}, "format": "charades-sta",
                 "durations": ["durations.csv"], "features": features.name, "text_encoder": "minilm-l6",
                 "max_words": 32},
        "train": {"epochs": settings.train_epochs, "batch_size": 16, "lr": 1.0e-3, "weight_decay": 0.05,
                  "warmup_epochs": 0.5, "schedule": "cosine", "grad_clip": 5.0, "seed": 0, "best_metric": "R1@0.5",
                  "best_split": "val", "nms": 0.5, "top_k": 10, "output_dir": str(out / "run"),
                  "test_every_epoch": False, "progress": settings.progress},
    }
    (out / "train.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    run = out / "run"
    if not (run / "best" / "model.safetensors").is_file():
        resume = ["--resume"] if (run / "last").is_dir() else []
        _command(out, "train", ["train", "--config", str(out / "train.yaml"), *resume], echo)
    fitted = run / "ranker"
    if not (fitted / "model.safetensors").is_file():
        _command(out, "fit-ranker", ["fit-ranker", "--checkpoint", str(run), "--features", str(features),
                                     "--annotations", str(world / "train.txt"), "--durations",
                                     str(world / "durations.csv"), "--relevant", str(world / "train.relevant.jsonl"),
                                     "--calibration-fraction", "0.2", "--out", str(fitted), *quiet], echo)
    return fitted


def _ground_examples(result: DemoResult, grounder: Any, features: Path, annotations: Any) -> None:
    """The test video with the most sentences; its first three grounded, with their score curves."""
    from grounding.data.features import open_feature_store
    from grounding.inference.grounder import time_profile

    by_video: dict[str, list[Any]] = {}
    for record in annotations.records:
        by_video.setdefault(record.video_id, []).append(record)
    video_id = max(sorted(by_video), key=lambda video: len(by_video[video]))
    chosen = by_video[video_id][:EXAMPLE_SENTENCES]
    store = open_feature_store(features)
    encoded = grounder.encode_features(np.asarray(store.get(video_id), dtype=np.float32), chosen[0].duration, video_id)
    prediction = grounder.predict(encoded, [record.sentence for record in chosen], top_k=3)
    result.example_video, result.example_duration = video_id, float(chosen[0].duration)
    for position, record in enumerate(chosen):
        times, scores = time_profile(prediction, position, num_points=200)
        result.examples.append(GroundedSentence(
            sentence=record.sentence,
            truth=(float(record.windows[0][0]), float(record.windows[0][1])),
            spans=[(float(span.start), float(span.end), float(span.score)) for span in prediction.spans[position]],
            curve_times=[round(float(value), 3) for value in times],
            curve_scores=[round(float(value), 4) for value in scores],
        ))


def _rank_examples(result: DemoResult, index: Path, world: Path) -> None:
    """VR@1/5/10 of every test sentence over the world's videos (multi-positive truth), and the ranked lists of
    the first two single-event test sentences of different videos (file order: not picked for how well they do)."""
    import json

    from grounding.ranking import Ranker, RankingSettings

    ranker = Ranker.from_index(index)
    lines = [json.loads(line) for line in (world / "test.relevant.jsonl").read_text(encoding="utf-8").splitlines() if line]
    if not lines:
        return
    rankings = ranker.rank_many([line["query"] for line in lines],
                                RankingSettings(top_videos=len(ranker.index), top_spans=1))
    first_true = []
    for line, ranking in zip(lines, rankings):
        relevant = {item["vid"] for item in line["relevant"]}
        first_true.append(next((rank for rank, video in enumerate(ranking, 1) if video.video_id in relevant), len(ranking) + 1))
    ranks = np.asarray(first_true)
    result.ranking_metrics = {f"VR@{k}": round(100.0 * float((ranks <= k).mean()), 2) for k in (1, 5, 10)}
    result.ranking_metrics.update({"num_queries": len(lines), "videos": len(ranker.index)})
    chosen: list[int] = []
    for position, line in enumerate(lines):
        single = "," not in line["query"] and " after " not in line["query"] and " then " not in line["query"]
        if single and all(line["vid"] != lines[other]["vid"] for other in chosen):
            chosen.append(position)
        if len(chosen) == RANKED_SENTENCES:
            break
    for position in chosen:
        relevant = {item["vid"] for item in lines[position]["relevant"]}
        rows = [
            RankedRow(video.video_id, float(video.probability),
                      (float(video.spans[0].start), float(video.spans[0].end)) if video.spans else None,
                      video.video_id in relevant)
            for video in rankings[position][:RANKED_VIDEOS]
        ]
        result.rankings.append((lines[position]["query"], rows))


def format_summary(result: DemoResult) -> str:
    """The demo's findings as plain text: the tables, the grounded sentences and the rankings."""
    lines = []
    for split in SPLITS:
        table = result.metrics.get(split)
        if not table:
            continue
        queries = int(table["model"]["num_queries"])
        lines.append(f"{split} ({queries} queries, %)        R1@0.3   R1@0.5   R1@0.7   R5@0.5     mIoU")
        for method in METHODS:
            if method not in table:
                continue
            row = table[method]
            label = "trained here" if method == "model" and result.trained else METHOD_LABELS[method]
            lines.append(f"  {label:<24}" + "".join(f"{row[key]:>9.2f}" for key in ("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.5", "mIoU")))
    if result.examples:
        lines.append(f"video {result.example_video} ({result.example_duration:.1f} s):")
        for example in result.examples:
            best = example.spans[0] if example.spans else (float("nan"),) * 3
            lines.append(f'  "{example.sentence}"  truth {example.truth[0]:.1f}-{example.truth[1]:.1f} s, '
                         f"model {best[0]:.1f}-{best[1]:.1f} s (score {best[2]:.2f})")
    if result.ranking_metrics:
        figures = result.ranking_metrics
        lines.append(f"ranking the {figures['videos']:g} videos for each of the {figures['num_queries']:g} test sentences "
                     f"(any video the sentence is true of counts): VR@1 {figures['VR@1']:.2f}, VR@5 {figures['VR@5']:.2f}, "
                     f"VR@10 {figures['VR@10']:.2f}")
    for sentence, rows in result.rankings:
        lines.append(f'ranked for "{sentence}":')
        for position, row in enumerate(rows, 1):
            span = f"{row.span[0]:.1f}-{row.span[1]:.1f} s" if row.span else "-"
            lines.append(f"  {position}. {row.video_id}  p={row.probability:.2f}  {span}  "
                         f"{'true' if row.relevant else 'not true'}")
    if result.report is not None:
        lines.append(f"report: {result.report}")
    return "\n".join(lines)
