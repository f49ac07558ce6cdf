"""Blind baselines: moment predictions that never look at the video or the sentence.

They measure how much of a benchmark can be solved from annotation statistics alone (Otani et al., BMVC 2020,
"Uncovering Hidden Challenges in Query-Based Video Moment Retrieval"). A grounding model that does not beat
them by a clear margin has learned the dataset's prior, not the video.

Every baseline has the same interface::

    baseline = make_baseline("iou-prior", top_k=10)   # or full-video, uniform-random, moment-prior
    baseline.fit(train_records)          # a no-op for the baselines that learn nothing
    windows = baseline.predict(record)   # (K, 3) float64 [start, end, score], seconds, descending score

``predict`` only reads ``record.qid`` and ``record.duration``. See ``docs/baselines.md`` for the numbers they
reach on Charades-STA, Charades-CD, ActivityNet Captions and TACoS.
"""

from __future__ import annotations

import inspect
import zlib
from abc import ABC, abstractmethod
from typing import Any, Iterable, Sequence

import numpy as np

from grounding.data.records import QueryRecord
from grounding.errors import ConfigError, InputError
from grounding.eval.iou import pairwise_temporal_iou
from grounding.eval.nms import nms


class FullVideoBaseline:
    """Predict the whole video: one window ``[0, duration]`` with score 1.

    Shapes:
        - output of ``predict``: (1, 3) float64 ``[[0, duration, 1]]``, seconds
    """

    name = "full-video"
    learns_from_training = False

    def fit(self, train_records: Iterable[QueryRecord]) -> "FullVideoBaseline":
        """Learn nothing; returns ``self`` so calls can be chained."""
        return self

    def predict(self, record: QueryRecord) -> np.ndarray:
        return np.array([[0.0, float(record.duration), 1.0]], dtype=np.float64)

    def __repr__(self) -> str:
        return "FullVideoBaseline()"


class UniformRandomBaseline:
    """``top_k`` windows whose two ends are drawn uniformly in ``[0, duration]`` and sorted (start <= end).

    The generator of each query is seeded from ``(seed, qid)``, so a query gets the same windows whatever
    order the queries come in, and a run is reproducible from its seed. Scores fall linearly from 1 to
    ``1 / top_k`` in draw order; the order itself carries no information.

    Args:
        top_k: windows per query (default 10).
        seed: base seed (default 0).

    Shapes:
        - output of ``predict``: (top_k, 3) float64 ``[start, end, score]``, seconds, descending score
    """

    name = "uniform-random"
    learns_from_training = False

    def __init__(self, top_k: int = 10, seed: int = 0) -> None:
        _check_top_k(top_k)
        if seed < 0:
            raise ConfigError(f"uniform-random: --seed must be >= 0, got {seed}")
        self.top_k = top_k
        self.seed = seed

    def fit(self, train_records: Iterable[QueryRecord]) -> "UniformRandomBaseline":
        """Learn nothing; returns ``self`` so calls can be chained."""
        return self

    def predict(self, record: QueryRecord) -> np.ndarray:
        # default_rng needs non-negative entropy; a sign flag keeps qid 5 and qid -5 apart.
        entropy = [self.seed, int(record.qid < 0), abs(int(record.qid))]
        rng = np.random.default_rng(entropy)
        ends = np.sort(rng.uniform(0.0, float(record.duration), size=(self.top_k, 2)), axis=1)  # (K, 2)
        scores = (self.top_k - np.arange(self.top_k)) / self.top_k  # (K,)
        return np.column_stack([ends, scores])

    def __repr__(self) -> str:
        return f"UniformRandomBaseline(top_k={self.top_k}, seed={self.seed})"


class GridPriorBaseline(ABC):
    """Shared machinery of the learned priors: a grid of normalized candidates, duration bins, NMS, scaling.

    Candidates are the moments ``(a / G, b / G)`` with ``0 <= a < b <= G``, in row order (``a``, then ``b``).
    A subclass only says how the training moments score the candidates (:meth:`score_candidates`). ``fit``
    ranks the candidates once per duration bin (NMS at ``nms_threshold``, keep ``top_k``); ``predict`` picks
    the bin from the test video's duration alone and scales the ranked moments by that duration.

    Args:
        top_k: moments per query.
        grid_size: G, number of grid steps over the normalized video.
        nms_threshold: temporal IoU above which (strictly) a lower-scored candidate is dropped.
        duration_bins: number of video-duration bins, each with its own prior; bin edges are quantiles of the
            training durations (one row per training window).
    """

    name = ""
    learns_from_training = True

    def __init__(self, top_k: int, grid_size: int, nms_threshold: float, duration_bins: int) -> None:
        _check_top_k(top_k)
        if grid_size < 2:
            raise ConfigError(f"{self.name}: grid_size must be >= 2, got {grid_size}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ConfigError(f"{self.name}: --nms must be in (0, 1], got {nms_threshold}")
        if duration_bins < 1:
            raise ConfigError(f"{self.name}: duration_bins must be >= 1, got {duration_bins}")
        self.top_k = top_k
        self.grid_size = grid_size
        self.nms_threshold = nms_threshold
        self.duration_bins = duration_bins
        self.duration_edges: np.ndarray | None = None  # (duration_bins - 1,) seconds, set by fit
        self.ranked_moments: list[np.ndarray] = []  # per duration bin: (K, 3) normalized [start, end, score]

    def candidates(self) -> np.ndarray:
        """(M, 2) float64 normalized ``[start, end]`` grid candidates, M = G (G + 1) / 2, in row order."""
        start_index, end_index = np.triu_indices(self.grid_size + 1, k=1)
        return np.column_stack([start_index, end_index]) / self.grid_size

    @abstractmethod
    def score_candidates(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) normalized training moments -> (M,) float64 score of each of :meth:`candidates`."""

    def fit(self, train_records: Iterable[QueryRecord]) -> "GridPriorBaseline":
        """Learn the prior from training queries; returns ``self``.

        Raises InputError if there are no training windows, or too few for ``duration_bins`` bins.
        """
        points, durations = normalized_moments(train_records)
        if len(points) == 0:
            raise InputError(
                f"{self.name}: the training annotations hold no windows; pass the training split with --train"
            )
        if len(points) < 2 * self.duration_bins:
            raise InputError(
                f"{self.name}: {len(points)} training windows cannot fill {self.duration_bins} duration bins; "
                "use fewer bins or more training data"
            )
        quantiles = np.linspace(0.0, 1.0, self.duration_bins + 1)[1:-1]
        self.duration_edges = np.quantile(durations, quantiles)
        bin_of_point = np.searchsorted(self.duration_edges, durations, side="right")
        candidates = self.candidates()
        self.ranked_moments = []
        for duration_bin in range(self.duration_bins):
            in_bin = bin_of_point == duration_bin
            # a bin can be empty when many videos share one duration; it falls back to the pooled prior
            scores = self.score_candidates(points[in_bin] if in_bin.any() else points)
            # candidates are in row order, so the stable NMS breaks ties toward earlier, then shorter moments
            keep = nms(candidates, scores, self.nms_threshold, max_keep=self.top_k)
            self.ranked_moments.append(np.column_stack([candidates[keep], scores[keep]]))
        return self

    def predict(self, record: QueryRecord) -> np.ndarray:
        if self.duration_edges is None:
            raise ConfigError(f"{self.name}: call fit(train_records) before predict (the prior is learned)")
        duration_bin = int(np.searchsorted(self.duration_edges, record.duration, side="right"))
        ranked = self.ranked_moments[duration_bin].copy()
        ranked[:, :2] *= float(record.duration)
        return ranked

    def __repr__(self) -> str:
        options = ", ".join(f"{name}={getattr(self, name)}" for name in inspect.signature(type(self)).parameters)
        return f"{type(self).__name__}({options})"


class MomentPriorBaseline(GridPriorBaseline):
    r"""Rank candidate moments by a smoothed density of the training moments, relative to their videos.

    Each training window becomes a normalized point ``(s, e) = (start / duration, end / duration)``. The
    points are counted at their nearest grid candidate and the counts are smoothed with a Gaussian kernel of
    standard deviation ``bandwidth`` (a fraction of the video), so candidate ``(a / G, b / G)`` scores

    .. math::
        \mathrm{score}(a, b) \propto \sum_{i} \exp\!\Big(-\frac{(a/G - s_i)^2 + (b/G - e_i)^2}{2 \sigma^2}\Big)

    with :math:`\sigma` = ``bandwidth`` (up to snapping each point to the grid); scores are normalized to
    sum to 1 over the candidates. The defaults were chosen by 5-fold cross-validation over the Charades-STA
    *training* videos (folds by video; see ``docs/baselines.md``); no test split was looked at.

    Args:
        top_k: moments per query (default 10).
        grid_size: G, number of grid steps over the normalized video (default 50, i.e. 2 % steps).
        bandwidth: Gaussian kernel standard deviation, as a fraction of the video (default 0.08; 0 = no smoothing).
        nms_threshold: temporal IoU above which a lower-scored candidate is dropped (default 0.3).
        duration_bins: number of video-duration bins, each with its own prior (default 1).

    Shapes:
        - output of ``predict``: (K, 3) float64 ``[start, end, score]``, seconds, descending score,
          K <= top_k (fewer only when NMS leaves fewer candidates)
    """

    name = "moment-prior"

    def __init__(
        self,
        top_k: int = 10,
        grid_size: int = 50,
        bandwidth: float = 0.08,
        nms_threshold: float = 0.3,
        duration_bins: int = 1,
    ) -> None:
        if not bandwidth >= 0.0:
            raise ConfigError(f"moment-prior: bandwidth must be >= 0 (0 = no smoothing), got {bandwidth}")
        self.bandwidth = bandwidth
        super().__init__(top_k, grid_size, nms_threshold, duration_bins)

    def prior_density(self, points: np.ndarray) -> np.ndarray:
        """Smoothed count of normalized moments on the candidate grid.

        Args:
            points: (N, 2) float normalized ``[start, end]`` with 0 <= start <= end <= 1.

        Returns:
            (G + 1, G + 1) float64; entry ``[a, b]`` scores candidate ``(a / G, b / G)``. Only ``a < b`` are
            candidates; the other entries are 0.
        """
        from scipy.ndimage import gaussian_filter

        grid = self.grid_size
        start_index = np.clip(np.rint(points[:, 0] * grid), 0, grid - 1).astype(np.int64)
        end_index = np.clip(np.rint(points[:, 1] * grid), 1, grid).astype(np.int64)
        # a moment shorter than one grid step snaps to the shortest candidate that contains its start
        end_index = np.maximum(end_index, start_index + 1)
        counts = np.zeros((grid + 1, grid + 1), dtype=np.float64)
        np.add.at(counts, (start_index, end_index), 1.0)
        if self.bandwidth > 0:
            counts = gaussian_filter(counts, sigma=self.bandwidth * grid, mode="constant", truncate=4.0)
        return np.triu(counts, k=1)

    def score_candidates(self, points: np.ndarray) -> np.ndarray:
        density = self.prior_density(points)[np.triu_indices(self.grid_size + 1, k=1)]  # (M,)
        return density / max(density.sum(), 1e-300)


class IoUPriorBaseline(GridPriorBaseline):
    r"""Rank candidate moments by the share of training moments they would match at ``iou_threshold``.

    A Gaussian density favours the exact spot where training moments pile up, which on datasets with
    moments of very different lengths (ActivityNet Captions) is a short window that few test moments
    overlap well. This prior instead scores each normalized candidate ``c`` by

    .. math::
        \mathrm{score}(c) = \frac{1}{N} \sum_i \mathbb{1}\big[\mathrm{IoU}(c, (s_i, e_i)) \ge \tau\big]

    with :math:`\tau` = ``iou_threshold``, i.e. its R@1 on the training set at that IoU (a density whose
    kernel is the IoU neighbourhood of the candidate). Candidates matching equally many are ordered by their
    mean IoU with the training moments (the score adds ``mean IoU / N``, less than one match). Then NMS,
    top-K and scaling as in :class:`GridPriorBaseline`. The defaults were chosen by 5-fold cross-validation
    over the Charades-STA training videos, like :class:`MomentPriorBaseline`'s; no test split was looked at.

    Args:
        top_k: moments per query (default 10).
        grid_size: G, number of grid steps over the normalized video (default 50).
        iou_threshold: IoU at which a training moment counts as matched (default 0.7).
        nms_threshold: temporal IoU above which a lower-scored candidate is dropped (default 0.4).
        duration_bins: number of video-duration bins, each with its own prior (default 1).

    Shapes:
        - output of ``predict``: (K, 3) float64 ``[start, end, score]``, seconds, descending score
    """

    name = "iou-prior"
    points_per_chunk = 2048  # bounds the (M, chunk) IoU matrix to ~20 MB at G = 50

    def __init__(
        self,
        top_k: int = 10,
        grid_size: int = 50,
        iou_threshold: float = 0.7,
        nms_threshold: float = 0.4,
        duration_bins: int = 1,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ConfigError(f"iou-prior: iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        super().__init__(top_k, grid_size, nms_threshold, duration_bins)

    def score_candidates(self, points: np.ndarray) -> np.ndarray:
        candidates = self.candidates()
        matched = np.zeros(len(candidates), dtype=np.float64)
        summed_iou = np.zeros(len(candidates), dtype=np.float64)
        for first in range(0, len(points), self.points_per_chunk):
            chunk = points[first : first + self.points_per_chunk]
            overlaps = pairwise_temporal_iou(candidates[:, None, :], chunk[None, :, :])  # (M, chunk)
            matched += (overlaps >= self.iou_threshold).sum(axis=1)
            summed_iou += overlaps.sum(axis=1)
        count = max(len(points), 1)
        # (matched + mean IoU) / N: the share matched, ties broken by mean IoU (mean IoU <= 1 never outranks a match)
        return (matched + summed_iou / count) / count


Baseline = FullVideoBaseline | UniformRandomBaseline | GridPriorBaseline  # what make_baseline returns

BASELINES: dict[str, type] = {
    FullVideoBaseline.name: FullVideoBaseline,
    UniformRandomBaseline.name: UniformRandomBaseline,
    MomentPriorBaseline.name: MomentPriorBaseline,
    IoUPriorBaseline.name: IoUPriorBaseline,
}


def baseline_options(name: str) -> list[str]:
    """Keyword arguments the baseline ``name`` accepts (empty for ``full-video``)."""
    return list(inspect.signature(_baseline_class(name)).parameters)


def make_baseline(name: str, **kwargs: Any) -> Baseline:
    """Build the baseline registered as ``name``; ``None`` kwargs are dropped so the defaults hold.

    Raises ConfigError for an unknown name (listing the known ones) or an option the method does not take.
    """
    cls = _baseline_class(name)
    options = {key: value for key, value in kwargs.items() if value is not None}
    accepted = baseline_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"baseline '{name}' takes no option {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'none'}"
        )
    return cls(**options)


def normalized_moments(records: Iterable[QueryRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Every ground-truth window as a fraction of its video, with that video's duration.

    Returns:
        points: (N, 2) float64 ``[start / duration, end / duration]`` clipped to [0, 1], one row per window.
        durations: (N,) float64 seconds, the duration of each row's video.
    """
    points: list[tuple[float, float]] = []
    durations: list[float] = []
    for record in records:
        for start, end in record.windows:
            points.append((start / record.duration, end / record.duration))
            durations.append(record.duration)
    if not points:
        return np.zeros((0, 2)), np.zeros(0)
    return np.clip(np.asarray(points, dtype=np.float64), 0.0, 1.0), np.asarray(durations, dtype=np.float64)


def video_folds(
    records: Sequence[QueryRecord], num_folds: int = 5
) -> list[tuple[list[QueryRecord], list[QueryRecord]]]:
    """Cross-validation folds by video, for tuning a baseline on a training split only.

    A video belongs to fold ``crc32(video_id) % num_folds``, so no video is on both sides of a fold, and the
    folds depend on the ids alone, not on file order or a global RNG.

    Returns:
        ``num_folds`` pairs ``(fit_records, held_out_records)``; each record is held out in exactly one fold.
    """
    if num_folds < 2:
        raise ConfigError(f"num_folds must be >= 2, got {num_folds}")
    fold_of = [zlib.crc32(record.video_id.encode("utf-8")) % num_folds for record in records]
    return [
        (
            [record for record, fold in zip(records, fold_of) if fold != held_out_fold],
            [record for record, fold in zip(records, fold_of) if fold == held_out_fold],
        )
        for held_out_fold in range(num_folds)
    ]


def _baseline_class(name: str) -> type:
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline '{name}'; choose one of: {', '.join(BASELINES)}")
    return BASELINES[name]


def _check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
