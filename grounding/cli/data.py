"""``grounding data``: look at annotation files before training or evaluating on them.

Sub-commands (``grounding data --help`` lists them):

``stats``
    Read one annotation file (any format of :data:`~grounding.data.annotations.ANNOTATION_FORMATS`) and print
    query/video counts, duration and moment-length statistics, windows per query, and what the reader clipped
    or dropped. ``--json`` writes the same numbers as JSON, ``--plot`` draws where moments sit in their videos.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from grounding.cli._common import add_annotation_options, add_command, write_json_atomic
from grounding.data.annotations import ANNOTATION_FORMATS, read_annotations
from grounding.data.records import AnnotationSet
from grounding.errors import InputError
from grounding.files import atomic_path

REPORT_LINES_SHOWN = 5


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "data", "inspect annotation files (stats)",
        "Inspect annotation files. Run 'grounding data SUBCOMMAND --help' for each sub-command.",
        "grounding data stats charades_sta_test.txt --durations Charades_v1_test.csv",
    )
    parser.set_defaults(_data_help=parser.format_help)
    data_subparsers = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    _add_stats_parser(data_subparsers)
    return parser


def _add_stats_parser(data_subparsers: Any) -> None:
    stats_parser = add_command(
        data_subparsers, "stats", "counts, durations, moment lengths, clipped/dropped lines of one file",
        "Read one annotation file and print counts (queries, videos, words per query), video durations,\n"
        "moment lengths (seconds and fraction of the video), windows per query, and what the reader\n"
        "clipped or dropped. Times are in seconds.\n"
        f"Formats: {', '.join(ANNOTATION_FORMATS)} (detected from the content unless --format).",
        "grounding data stats charades_sta_test.txt --durations Charades_v1_test.csv --plot moments.png "
        "--json stats.json",
    )
    stats_parser.add_argument("file", help="annotation file (.txt, .json or .jsonl)")
    add_annotation_options(stats_parser)
    stats_parser.add_argument("--plot", default=None, metavar="OUT.png",
                              help="save a figure of normalized moment (start, end) and lengths")
    stats_parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the statistics as JSON")
    stats_parser.set_defaults(_data_run=run_stats)


def run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "_data_run", None)
    if handler is None:
        print(args._data_help(), file=sys.stderr, end="")
        return 1
    return handler(args)


def _summary(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """mean/median/min/max of ``values``; all None when there are none."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"mean": None, "median": None, "min": None, "max": None}
    return {"mean": float(array.mean()), "median": float(np.median(array)),
            "min": float(array.min()), "max": float(array.max())}


def normalized_windows(annotations: AnnotationSet) -> np.ndarray:
    """Every ground-truth window divided by its video's duration: (N_windows, 2) float64 in [0, 1]."""
    rows = [(start / record.duration, end / record.duration)
            for record in annotations for start, end in record.windows]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def compute_stats(annotations: AnnotationSet) -> dict[str, Any]:
    """Statistics of one annotation set as a JSON-ready dict (times in seconds).

    ``video_duration_s`` counts each video once; ``moment_length_s`` and ``moment_length_fraction`` count
    every window (a Moment-DETR query may have several); ``clipped`` / ``dropped`` hold every report line.
    """
    records = annotations.records
    durations_by_video: dict[str, float] = {}
    for record in records:
        durations_by_video.setdefault(record.video_id, record.duration)
    lengths = np.asarray([end - start for record in records for start, end in record.windows], dtype=np.float64)
    normalized = normalized_windows(annotations)
    windows_per_query = [len(record.windows) for record in records]
    histogram: dict[str, int] = {}
    for count in sorted(set(windows_per_query)):
        histogram[str(count)] = windows_per_query.count(count)
    report = annotations.report
    return {
        "path": annotations.path,
        "format": annotations.format,
        "queries_read": report.num_read,
        "queries": len(records),
        "queries_dropped": report.num_read - len(records),
        "videos": len(durations_by_video),
        "words_per_query": _summary([len(record.sentence.split()) for record in records]),
        "video_duration_s": _summary(list(durations_by_video.values())),
        "moment_length_s": _summary(lengths),
        "moment_length_fraction": _summary(normalized[:, 1] - normalized[:, 0]),
        "windows_per_query": {**_summary(windows_per_query), "histogram": histogram},
        "clipped": {"count": len(report.clipped), "lines": list(report.clipped)},
        "dropped": {"count": len(report.dropped), "lines": list(report.dropped)},
    }


def _format_summary(summary: dict[str, Any], digits: int = 2) -> str:
    if summary["mean"] is None:
        return "-"
    return "  ".join(f"{key} {summary[key]:.{digits}f}" for key in ("mean", "median", "min", "max"))


def format_stats(stats: dict[str, Any]) -> str:
    """The human-readable text ``grounding data stats`` prints."""
    windows = stats["windows_per_query"]
    histogram = ", ".join(f"{count} window(s): {queries:,}" for count, queries in windows["histogram"].items())
    lines = [
        f"{stats['path']} ({stats['format']})",
        f"  queries             {stats['queries']:,} kept of {stats['queries_read']:,} read "
        f"({stats['queries_dropped']:,} dropped)",
        f"  videos              {stats['videos']:,}",
        f"  words per query     {_format_summary(stats['words_per_query'])}",
        f"  video duration (s)  {_format_summary(stats['video_duration_s'])}",
        f"  moment length (s)   {_format_summary(stats['moment_length_s'])}",
        f"  moment / duration   {_format_summary(stats['moment_length_fraction'], digits=3)}",
        f"  windows per query   {_format_summary(windows)}" + (f"  ({histogram})" if histogram else ""),
    ]
    for kind, what in (("clipped", "window(s) clipped to the video"), ("dropped", "window(s)/query(s) dropped")):
        entry = stats[kind]
        lines.append(f"  {kind:<19} {entry['count']:,} {what}")
        lines.extend(f"    {line}" for line in entry["lines"][:REPORT_LINES_SHOWN])
        hidden = entry["count"] - REPORT_LINES_SHOWN
        if hidden > 0:
            lines.append(f"    ... and {hidden:,} more (--json lists them all)")
    return "\n".join(lines)


def plot_moments(annotations: AnnotationSet, out_path: str | os.PathLike) -> None:
    """Save a figure: 2D histogram of normalized (start, end) and a histogram of normalized moment lengths.

    Uses matplotlib's Agg canvas directly (no pyplot, no display needed). The image format follows the
    file extension (``.png`` when there is none); the file is written through a temporary name.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    normalized = normalized_windows(annotations)
    if normalized.shape[0] == 0:
        raise InputError(f"{annotations.path}: no query left after reading, nothing to plot for --plot.")
    target = Path(out_path)
    image_format = target.suffix.lstrip(".").lower() or "png"
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    start_end_axes, length_axes = figure.subplots(1, 2)
    _, _, _, image = start_end_axes.hist2d(normalized[:, 0], normalized[:, 1], bins=40,
                                           range=[[0, 1], [0, 1]], cmin=1, cmap="viridis")
    figure.colorbar(image, ax=start_end_axes, label="windows")
    start_end_axes.plot([0, 1], [0, 1], color="gray", linewidth=0.8, linestyle="--")
    start_end_axes.set(xlabel="start / duration", ylabel="end / duration", xlim=(0, 1), ylim=(0, 1),
                       title=f"moment position ({normalized.shape[0]:,} windows)")
    start_end_axes.set_aspect("equal")
    length_axes.hist(normalized[:, 1] - normalized[:, 0], bins=40, range=(0, 1), color="tab:blue")
    length_axes.set(xlabel="moment length / duration", ylabel="windows", title="normalized moment length")
    figure.suptitle(f"{Path(annotations.path).name} ({annotations.format})")
    try:
        with atomic_path(target) as temporary:
            figure.savefig(temporary, format=image_format, dpi=110)  # the format is explicit: not read from the name
    except ValueError as error:
        raise InputError(f"--plot {out_path}: cannot save this image format ({error}); use a .png name.") from error


def run_stats(args: argparse.Namespace) -> int:
    annotations = read_annotations(args.file, format=args.format, durations=args.durations)
    stats = compute_stats(annotations)
    print(format_stats(stats))
    if args.plot:
        plot_moments(annotations, args.plot)
        print(f"plot written to {args.plot}")
    if args.json:
        write_json_atomic(args.json, stats)
        print(f"statistics written to {args.json}")
    return 0
