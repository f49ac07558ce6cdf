"""From a video file (or clip features) and sentences to spans in seconds, with a trained model.

Three lines::

    model = GroundingModel.from_pretrained("runs/rendered-world")   # a run folder (its best/ or last/) or a checkpoint
    video = model.encode_video("video.mp4")                          # decode + backbone + clip states once
    spans = model.ground(video, "the red circle spins")              # [Span(start, end, score), ...] best first

:class:`GroundingModel` delegates to :class:`Grounder`, which holds the model plus what the checkpoint says turns
inputs into model inputs (:class:`PipelineInfo`: the text encoder, the frame backbone and its extraction settings,
saved as ``metadata["pipeline"]`` of the checkpoint's ``config.json``). A video file is turned into clip features
exactly as ``grounding extract`` does (same decoder, same backbone, same clip plan), then resampled to the model's
``num_clips`` as in training. The model's query-independent clip states are computed once per
:class:`EncodedVideo`, so many queries share them.

This module sits in ``grounding.model`` (it imports only ``data``, ``text`` and ``video`` below it);
``grounding.training.checkpoint`` re-exports :class:`PipelineInfo` and :func:`find_checkpoint` for the trainer.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from grounding.data.features import validate_clip_feats
from grounding.data.resample import resample_clips
from grounding.errors import InputError
from grounding.model.modeling import CONFIG_FILE, WEIGHTS_FILE, GroundingModel
from grounding.model.outputs import GroundingOutput, Span
from grounding.model.spans import candidate_windows, decode_spans

PIPELINE_KEY = "pipeline"  # key of PipelineInfo in the metadata of config.json
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)


@dataclass
class PipelineInfo:
    """What turns a video and a sentence into model inputs, saved with the weights (``metadata["pipeline"]`` of
    the checkpoint's ``config.json``).

    Attributes:
        text_encoder: :func:`grounding.text.create_text_encoder` name (``minilm-l6``, ``hf:DIR``, ``glove:FILE``).
        max_words: tokens kept per query.
        syntax: language-graph mode (``auto``, ``dependency``, ``sequential``).
        backbone: frame backbone of the clip features (``grounding extract --backbone``), or None when unknown
            (then only ``--features`` inputs work).
        clip_seconds: clip length in seconds used at extraction, or None.
        frames_per_clip: frames averaged per clip at extraction, or None (the backbone's default).
        frame_size: decoded frame side in pixels, or None (the backbone's input size).
        resize: ``squash`` or ``crop``, or None (the extractor's default).
        nms: NMS IoU threshold for decoding spans (None = off).
        top_k: spans returned per query by default.
    """

    text_encoder: str = "minilm-l6"
    max_words: int = 32
    syntax: str = "auto"
    backbone: str | None = None
    clip_seconds: float | None = None
    frames_per_clip: int | None = None
    frame_size: int | None = None
    resize: str | None = None
    nms: float | None = 0.5
    top_k: int = 5

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: Any, source: str = "config.json") -> PipelineInfo:
        if not isinstance(values, Mapping):
            raise InputError(f"{source}: metadata.{PIPELINE_KEY} must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"{source}: unknown metadata.{PIPELINE_KEY} keys {unknown}; was it written by a newer grounding?"
            )
        return cls(**dict(values))

    @classmethod
    def from_model(cls, model: Any) -> PipelineInfo:
        """The pipeline saved with a model loaded by ``GroundingModel.from_pretrained`` (the defaults:
        MiniLM-L6 and no known backbone, for a model without one)."""
        metadata = getattr(model, "pretrained_metadata", None) or {}
        values = metadata.get(PIPELINE_KEY)
        return cls() if values is None else cls.from_json(values)


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` names: a checkpoint itself, or a run folder (its ``best``, else ``last``).

    A folder interrupted mid-swap is found through its ``.old`` copy.

    Raises:
        InputError: nothing there holds a model.
    """
    folder = Path(path)

    def complete(candidate: Path) -> bool:
        return all((candidate / name).is_file() for name in MODEL_FILES)

    candidates = [folder, folder.with_name(folder.name + ".old")]
    candidates += [folder / name for name in ("best", "last", "best.old", "last.old")]
    for candidate in candidates:
        if candidate.is_dir() and complete(candidate):
            return candidate
    if not folder.exists():
        raise InputError(f"checkpoint '{folder}': no such folder; pass a run folder or its best/ or last/ folder")
    raise InputError(
        f"checkpoint '{folder}': no {' + '.join(MODEL_FILES)} there nor in its best/ or last/ folders; pass a folder "
        "written by 'grounding train' (or GroundingModel.save_pretrained)"
    )


@dataclass
class EncodedVideo:
    """A video ready for any number of queries.

    Attributes:
        clip_feats: (T, D) float32 clip features resampled to the model's ``num_clips``.
        clip_mask: (T,) bool, True = real clip.
        duration: the video's length in seconds.
        video_id: a name for messages and outputs.
        clip_states: (T, H) the model's query-independent clip states (filled on first use).
    """

    clip_feats: Tensor
    clip_mask: Tensor
    duration: float
    video_id: str = ""
    clip_states: Tensor | None = None


@dataclass
class GroundingResult:
    """Everything one :meth:`Grounder.predict` call computed, for printing and plotting.

    Attributes:
        video: the :class:`EncodedVideo`.
        queries: the Q sentences.
        spans: per query, its top spans ``Span(start, end, score)`` in seconds, best first, after NMS.
        output: the model's :class:`GroundingOutput` for the Q (video, query) pairs.
        candidate_windows: (M, 2) float64 every candidate's ``(start, end)`` in seconds.
    """

    video: EncodedVideo
    queries: list[str]
    spans: list[list[Span]]
    output: GroundingOutput
    candidate_windows: np.ndarray


class Grounder:
    """A trained model with its text encoder and (lazily) its frame backbone.

    Args:
        model: a :class:`GroundingModel` (``from_pretrained`` fills its pipeline metadata).
        pipeline: what turns inputs into model inputs; default: the one saved with the model.
        device: where to compute; default: the model's device.
    """

    def __init__(
        self, model: GroundingModel, pipeline: PipelineInfo | None = None, device: str | torch.device | None = None
    ) -> None:
        self.model = model.eval()
        self.pipeline = pipeline if pipeline is not None else PipelineInfo.from_model(model)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self._text_encoder: Any = None
        self._backbone: Any = None

    def __repr__(self) -> str:
        config = self.model.config
        return (
            f"Grounder(num_clips={config.num_clips}, input_dim={config.input_dim}, "
            f"text_encoder={self.pipeline.text_encoder!r}, backbone={self.pipeline.backbone!r}, device={self.device})"
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Grounder:
        """Load a checkpoint folder (a run folder picks its ``best``, else ``last``)."""
        folder = find_checkpoint(path)
        return cls(GroundingModel.from_pretrained(folder, map_location=device), device=device)

    @classmethod
    def for_model(cls, model: GroundingModel) -> Grounder:
        """The model's own Grounder, built once and kept on the model (so its text encoder loads once); built
        again when the model has moved to another device."""
        grounder = model.__dict__.get("_grounder")
        if grounder is None or grounder.device != next(model.parameters()).device:
            grounder = cls(model)
            model.__dict__["_grounder"] = grounder
        return grounder

    # ---- encoders ----
    @property
    def text_encoder(self) -> Any:
        if self._text_encoder is None:
            from grounding.text.encoders import create_text_encoder

            pipeline = self.pipeline
            encoder = create_text_encoder(pipeline.text_encoder, max_words=pipeline.max_words, syntax=pipeline.syntax)
            if encoder.dim != self.model.config.text.input_dim:
                raise InputError(
                    f"text encoder '{self.pipeline.text_encoder}' gives {encoder.dim}-d word features, but the model "
                    f"expects text.input_dim={self.model.config.text.input_dim}; the checkpoint's pipeline does not "
                    "match it"
                )
            self._text_encoder = encoder.to(self.device)
        return self._text_encoder

    def _require_backbone_settings(self, what: str) -> None:
        if self.pipeline.backbone is None:
            raise InputError(
                f"{what}: this checkpoint records no frame backbone (its features file had no 'backbone' attribute "
                "and data.backbone was not set), so it cannot extract features from a video; pass clip features "
                "instead (grounding ground --features FILE --video-id ID)"
            )

    def encode_features(self, clip_feats: Any, duration: float, video_id: str = "") -> EncodedVideo:
        """Wrap precomputed clip features.

        Args:
            clip_feats: (T, D) array-like, T >= 1, D = the model's ``input_dim``; resampled to ``num_clips``.
            duration: the video's length in seconds (> 0).
            video_id: a name for messages.

        Raises:
            InputError: wrong shape or width, NaN/inf, or a duration that is not > 0.
        """
        where = f"video '{video_id}'" if video_id else "clip_feats"
        feats = validate_clip_feats(
            clip_feats.detach().cpu().numpy() if isinstance(clip_feats, Tensor) else clip_feats, where,
            expected_dim=self.model.config.input_dim, dim_source="the model's input_dim",
        )
        if not isinstance(duration, (int, float)) or not np.isfinite(duration) or duration <= 0:
            raise InputError(f"{where}: duration must be seconds > 0, got {duration!r}")
        resampled, mask = resample_clips(feats, self.model.config.num_clips)
        return EncodedVideo(torch.from_numpy(resampled), torch.from_numpy(mask), float(duration), video_id)

    def encode_video(self, video: str | os.PathLike[str]) -> EncodedVideo:
        """Decode a video file and extract its clip features as ``grounding extract`` would with the
        checkpoint's backbone and settings.

        Raises:
            InputError: the checkpoint has no backbone, or the video cannot be decoded (with the reason).
        """
        from grounding.data.features import HDF5FeatureStore
        from grounding.video.backbones import create_backbone
        from grounding.video.extract import ExtractionConfig, VideoSource, extract_features, video_id_for

        path = Path(video)
        self._require_backbone_settings(str(path))
        if not path.is_file():
            raise InputError(f"{path}: no such video file; check the path")
        pipeline = self.pipeline
        if self._backbone is None:
            self._backbone = create_backbone(pipeline.backbone, device=self.device)
        options: dict[str, Any] = {"backbone": pipeline.backbone, "workers": 0, "device": str(self.device)}
        for key, value in (("clip_seconds", pipeline.clip_seconds), ("frames_per_clip", pipeline.frames_per_clip),
                           ("size", pipeline.frame_size), ("resize", pipeline.resize)):
            if value is not None:
                options[key] = value
        video_id = video_id_for(path)
        # extract_features is the one implementation of decode -> backbone -> clip features; a temporary HDF5
        # file keeps inference bit-identical to what training read.
        with tempfile.TemporaryDirectory(prefix="grounding-ground-") as folder:
            out = Path(folder) / "features.h5"
            report = extract_features(
                [VideoSource(video_id, path)], out, ExtractionConfig(**options), backbone=self._backbone, progress=False
            )
            if report.failures:
                raise InputError(f"{path}: cannot extract clip features: {report.failures[0].reason}")
            store = HDF5FeatureStore(out)
            try:
                clip_feats = store.get(video_id)
                duration = store.attrs(video_id).get("duration")
            finally:
                store.close()
        if duration is None:
            raise InputError(f"{path}: the extractor reported no duration for this video")
        return self.encode_features(clip_feats, float(duration), video_id)

    def _as_encoded(self, video: Any) -> EncodedVideo:
        if isinstance(video, EncodedVideo):
            return video
        if isinstance(video, (str, os.PathLike)):
            return self.encode_video(video)
        raise InputError(
            "video must be a file path or an EncodedVideo (from encode_video / encode_features), got "
            f"{type(video).__name__}"
        )

    # ---- prediction ----
    @torch.no_grad()
    def predict(
        self,
        video: Any,
        queries: Sequence[str],
        top_k: int | None = None,
        nms_threshold: float | None | str = "default",
    ) -> GroundingResult:
        """Score every candidate span of ``video`` for each query and keep the top ones.

        Args:
            video: a video file path or an :class:`EncodedVideo`.
            queries: Q sentences.
            top_k: spans per query (default: the checkpoint's, 5).
            nms_threshold: NMS IoU threshold; ``"default"`` = the checkpoint's (train.nms); None = no NMS.

        Returns:
            :class:`GroundingResult`.
        """
        encoded = self._as_encoded(video)
        if isinstance(queries, str):
            queries = [queries]
        queries = list(queries)
        top_k = self.pipeline.top_k if top_k is None else top_k
        nms = self.pipeline.nms if nms_threshold == "default" else nms_threshold
        model = self.model
        clip_mask = encoded.clip_mask.to(self.device)[None]  # (1, T)
        if encoded.clip_states is None:
            encoded.clip_states = model.encode_clips(encoded.clip_feats.to(self.device)[None], clip_mask)[0]
        text = self.text_encoder.encode(queries, device=self.device)
        word_states = model.encode_query(text.word_feats, text.word_mask, text.edge_index)  # (Q, L, H)
        num_queries = len(queries)
        clip_states = encoded.clip_states.to(self.device)[None].expand(num_queries, -1, -1)  # (Q, T, H)
        output = model.score_encoded(clip_states, clip_mask.expand(num_queries, -1), word_states, text.word_mask)
        durations = torch.full((num_queries,), encoded.duration, dtype=torch.float64)
        spans = decode_spans(output, durations, top_k=top_k, nms_threshold=nms)
        windows = candidate_windows(output.candidates, output.clip_mask[:1], durations[:1].to(output.clip_mask.device))
        return GroundingResult(encoded, queries, spans, output, windows[0].cpu().numpy())

    def ground(
        self,
        video: Any,
        query: str | Sequence[str],
        top_k: int | None = None,
        nms_threshold: float | None | str = "default",
    ) -> list[Span] | list[list[Span]]:
        """The best spans for one query (a list of :class:`Span`) or for each of several (a list of lists).

        Spans are ``(start, end, score)`` in seconds within ``[0, duration]``, best first, after NMS.
        """
        result = self.predict(video, [query] if isinstance(query, str) else query, top_k, nms_threshold)
        return result.spans[0] if isinstance(query, str) else result.spans


def time_profile(result: GroundingResult, query_index: int, num_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """For plotting: at each time t, the best score of a candidate span covering t.

    Returns:
        ``(times, scores)``: (num_points,) seconds over ``[0, duration]`` and (num_points,) scores in [0, 1].
    """
    windows = result.candidate_windows  # (M, 2)
    scores = result.output.span_scores[query_index].float().cpu().numpy()  # (M,)
    valid = result.output.candidate_mask[query_index].cpu().numpy()
    times = np.linspace(0.0, result.video.duration, num_points)
    covers = (windows[None, :, 0] <= times[:, None]) & (times[:, None] <= windows[None, :, 1]) & valid[None]
    return times, np.where(covers, scores[None, :], 0.0).max(axis=1)


def score_map(result: GroundingResult, query_index: int) -> np.ndarray:
    """For plotting: the sparse candidates scattered into a (T, T) image, rows = start clip, columns = end clip,
    NaN where there is no candidate."""
    num_clips = result.output.clip_mask.shape[1]
    image = np.full((num_clips, num_clips), np.nan)
    candidates = result.output.candidates.cpu().numpy()
    valid = result.output.candidate_mask[query_index].cpu().numpy()
    scores = result.output.span_scores[query_index].float().cpu().numpy()
    image[candidates[valid, 0], candidates[valid, 1]] = scores[valid]
    return image
