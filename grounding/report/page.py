"""The demo's report: one self-contained HTML page (videos inlined) plus a PNG of the metrics.

The page holds, top to bottom: the metrics table of each split (the model beside the blind baselines), the example
video with one timeline per sentence under it (the true moment, the model's top spans, and the score curve: at
each time, the best score of a candidate span covering it, scaled to its peak; clicking a span or the curve seeks the video there and
plays it), and the ranked lists (each ranked video playable, its best span clickable). No script or style is
fetched from anywhere: it works offline and from a file:// URL.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

TIMELINE_WIDTH = 640
METRIC_COLUMNS = ("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.5", "mIoU")
METHOD_LABELS = {"model": "model", "shipped": "shipped model", "full-video": "full video (blind)",
                 "moment-prior": "moment prior (blind)"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.25em 0.8em; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
tr.model td { font-weight: bold; }
.example { display: flex; gap: 1.5em; align-items: flex-start; }
.timeline { margin: 0.2em 0 1em; }
.timeline svg { cursor: pointer; background: #fafafa; border: 1px solid #ddd; }
.sentence { font-style: italic; }
.span { cursor: pointer; }
.legend span { display: inline-block; margin-right: 1.2em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; margin-right: 0.3em; }
.ranked { display: flex; gap: 1em; flex-wrap: wrap; }
.ranked figure { margin: 0; width: 170px; font-size: 0.85em; }
.true { color: #1a7f37; } .false { color: #b42318; }
button.seek { font: inherit; border: 1px solid #999; background: #fff; border-radius: 3px; cursor: pointer; }
"""

SCRIPT = """
function seek(id, start) {
  const video = document.getElementById(id);
  video.currentTime = start;
  const playing = video.play();
  if (playing !== undefined) playing.catch(() => {});
}
document.querySelectorAll('[data-seek]').forEach(element => {
  element.addEventListener('click', event => {
    event.stopPropagation();
    seek(element.dataset.video, parseFloat(element.dataset.seek));
  });
});
document.querySelectorAll('svg[data-duration]').forEach(svg => {
  svg.addEventListener('click', event => {
    const box = svg.getBoundingClientRect();
    const time = (event.clientX - box.left) / box.width * parseFloat(svg.dataset.duration);
    seek(svg.dataset.video, time);
  });
});
document.querySelectorAll('video').forEach(video => {
  video.addEventListener('timeupdate', () => {
    document.querySelectorAll('line.playhead[data-video="' + video.id + '"]').forEach(line => {
      const x = video.currentTime / parseFloat(line.dataset.duration) * parseFloat(line.dataset.width);
      line.setAttribute('x1', x); line.setAttribute('x2', x);
    });
  });
});
"""


def _video_tag(path: Path, element_id: str, width: int) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<video id="{element_id}" width="{width}" controls muted preload="auto" '
            f'src="data:video/mp4;base64,{data}"></video>')


def _x(seconds: float, duration: float) -> float:
    return round(max(0.0, min(seconds, duration)) / duration * TIMELINE_WIDTH, 2)


def _timeline(example: Any, duration: float, video_id: str) -> str:
    """One sentence's SVG: the truth bar, the top spans (clickable) and the score curve over the video's length."""
    height, top = 70, 30
    peak = max(example.curve_scores, default=0.0) or 1.0  # scaled to its peak: scores of 0.01 are still readable
    points = " ".join(
        f"{_x(time, duration):g},{round(top + (1.0 - score / peak) * (height - top - 4), 2):g}"
        for time, score in zip(example.curve_times, example.curve_scores)
    )
    parts = [
        f'<svg width="{TIMELINE_WIDTH}" height="{height}" data-duration="{duration}" data-video="{video_id}" '
        f'role="img" aria-label="timeline">',
        f'<rect x="{_x(example.truth[0], duration):g}" y="2" '
        f'width="{round(_x(example.truth[1], duration) - _x(example.truth[0], duration), 2):g}" '
        'height="10" fill="#1a7f37"><title>true moment</title></rect>',
    ]
    for rank, (start, end, score) in enumerate(example.spans):
        opacity = 1.0 if rank == 0 else 0.45
        parts.append(
            f'<rect class="span" x="{_x(start, duration):g}" y="15" '
            f'width="{max(round(_x(end, duration) - _x(start, duration), 2), 1):g}" '
            f'height="10" fill="#1f6feb" fill-opacity="{opacity}" data-seek="{start:.3f}" data-video="{video_id}">'
            f"<title>top {rank + 1}: {start:.1f}-{end:.1f} s, score {score:.2f} (click to play)</title></rect>"
        )
    parts.append(f'<polyline points="{points}" fill="none" stroke="#d29922" stroke-width="1.5">'
                 f"<title>best score of a span covering each time (peak {peak:.2f})</title></polyline>")
    parts.append(f'<line class="playhead" data-video="{video_id}" data-duration="{duration}" '
                 f'data-width="{TIMELINE_WIDTH}" x1="0" x2="0" y1="0" y2="{height}" stroke="#222"/>')
    parts.append("</svg>")
    return "".join(parts)


def _metrics_table(split: str, table: dict[str, dict[str, float]], trained: bool = False) -> str:
    queries = int(table["model"]["num_queries"])
    head = "".join(f"<th>{column}</th>" for column in METRIC_COLUMNS)
    rows = []
    for method, label in METHOD_LABELS.items():
        label = "model trained by this demo" if method == "model" and trained else label
        if method in table:
            cells = "".join(f"<td>{table[method][column]:.2f}</td>" for column in METRIC_COLUMNS)
            rows.append(f'<tr class="{method}"><td>{html.escape(label)}</td>{cells}</tr>')
    return (f"<h3><code>{split}</code> ({queries} queries, %)</h3>"
            f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>")


def _metrics_png(result: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 2.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    splits = list(result.metrics)
    methods = [method for method in METHOD_LABELS if all(method in result.metrics[split] for split in splits)]
    width = 0.8 / len(methods)
    for offset, method in enumerate(methods):
        label = "model trained by this demo" if method == "model" and result.trained else METHOD_LABELS[method]
        values = [result.metrics[split][method]["R1@0.5"] for split in splits]
        axes.bar([i + offset * width for i in range(len(splits))], values, width, label=label)
    axes.set_xticks([i + width for i in range(len(splits))], splits)
    axes.set_ylabel("R1@0.5 (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path)


def write_demo_report(result: Any, folder: Path) -> Path:
    """Write ``folder/index.html`` and ``folder/r1-at-0.5.png`` for ``result`` (a
    :class:`grounding.demo.DemoResult`: the demo imports this module, never the other way round); returns the
    page's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _metrics_png(result, folder / "r1-at-0.5.png")
    body = [
        "<h1>grounding demo</h1>",
        f"<p>A rendered world of seed {result.seed} that the model never saw, and the checkpoint "
        f"<code>{html.escape(result.checkpoint)}</code>. Every figure below was computed by this run.</p>",
        "<h2>Moment retrieval</h2>",
        *[_metrics_table(split, table, result.trained) for split, table in result.metrics.items()],
        '<img src="r1-at-0.5.png" alt="R1@0.5 of the model and the blind baselines">',
    ]
    if result.examples:
        video_id = "example"
        duration = result.example_duration
        timelines = []
        for example in result.examples:
            best = example.spans[0] if example.spans else None
            buttons = "".join(
                f'<button class="seek" data-seek="{start:.3f}" data-video="{video_id}">{start:.1f}-{end:.1f} s '
                f"({score:.2f})</button> " for start, end, score in example.spans
            )
            timelines.append(
                f'<div class="timeline"><div class="sentence">"{html.escape(example.sentence)}"</div>'
                f"<div>truth {example.truth[0]:.1f}-{example.truth[1]:.1f} s; model "
                f"{'-' if best is None else f'{best[0]:.1f}-{best[1]:.1f} s'}; top spans: {buttons}</div>"
                f"{_timeline(example, duration, video_id)}</div>"
            )
        body += [
            f"<h2>Three sentences in <code>{html.escape(result.example_video)}</code> ({duration:.1f} s)</h2>",
            '<div class="legend"><span><i class="swatch" style="background:#1a7f37"></i>true moment</span>'
            '<span><i class="swatch" style="background:#1f6feb"></i>top spans (click to play)</span>'
            '<span><i class="swatch" style="background:#d29922"></i>score curve, scaled to its peak (click to seek)</span></div>',
            f'<div class="example">{_video_tag(result.video_path(result.example_video), video_id, 320)}'
            f"<div>{''.join(timelines)}</div></div>",
        ]
    if result.ranking_metrics:
        figures = result.ranking_metrics
        body.append(
            f"<h2>Ranking the world's {figures['videos']:g} videos</h2><p>For each of the {figures['num_queries']:g} "
            "test sentences, every video ranked; a hit is any video the sentence is true of (%): "
            f"VR@1 {figures['VR@1']:.2f}, VR@5 {figures['VR@5']:.2f}, VR@10 {figures['VR@10']:.2f}. "
            "Two of them, the first single-event sentences of the test file:</p>"
        )
    for number, (sentence, rows) in enumerate(result.rankings):
        figures = []
        for position, row in enumerate(rows, 1):
            element = f"rank{number}-{position}"
            span = (f'<button class="seek" data-seek="{row.span[0]:.3f}" data-video="{element}">best span '
                    f"{row.span[0]:.1f}-{row.span[1]:.1f} s</button>") if row.span else ""
            verdict = '<span class="true">true</span>' if row.relevant else '<span class="false">not true</span>'
            figures.append(
                f"<figure>{_video_tag(result.video_path(row.video_id), element, 160)}<figcaption>{position}. "
                f"<code>{html.escape(row.video_id)}</code> p = {row.probability:.2f}, {verdict}<br>{span}</figcaption></figure>"
            )
        body += [f'<h2>The world\'s videos ranked for "{html.escape(sentence)}"</h2>',
                 f'<div class="ranked">{"".join(figures)}</div>']
    seconds = ", ".join(f"{name} {value:g} s" for name, value in result.seconds.items())
    body.append(f"<p><small>Step times: {html.escape(seconds)}. Every figure as JSON: "
                "<code>summary.json</code> beside this folder.</small></p>")
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>grounding demo</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}<script>{SCRIPT}</script></body></html>")
    target = folder / "index.html"
    target.write_text(page, encoding="utf-8")
    return target
