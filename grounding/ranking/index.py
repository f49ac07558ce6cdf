"""The corpus index on disk: per-video encodings a ranker reads without re-encoding a video at query time.

Layout of an index folder::

    index.json            what the index holds (format, committed row count, widths, engine, bank), written last
    model/                the checkpoint that encoded the videos (weights, config, pipeline), copied in
    videos.jsonl          one line per row: {"id", "duration"} (seconds)
    clip_states.bin       (N, T, H) raw little-endian float32 or float16: the model's query-independent clip states
    embeddings.bin        (N, H) float32, unit-norm: stage 1's coarse video embeddings (the engines search these)
    bank_scores.bin       (N, B) float32, only with a dual-softmax bank: each bank query's pooled log-score per video
    bank.json             the bank's sentences and the pooling they were scored with
    engine-<name>/        the stage-1 engine's own files (none for ``exact``)

Rows are only ever appended. An append writes each data file past the committed rows (first cutting off any
tail an interrupted append left), flushes them to disk, brings the engine up to date, and only then rewrites
``index.json`` with the new count (atomically). So a kill at any moment leaves the index at its last commit, and
the next append or ``grounding index`` run continues from there. Reading trusts no size it has not checked: every
file must hold at least the committed rows, else the index is reported damaged.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from grounding.errors import InputError
from grounding.files import write_text_atomic
from grounding.ranking.engines import VectorEngine, open_engine, sync_engine

INDEX_FORMAT = "grounding-video-index"
INDEX_VERSION = 1
INDEX_FILE = "index.json"
MODEL_DIR = "model"
VIDEOS_FILE = "videos.jsonl"
CLIP_STATES_FILE = "clip_states.bin"
EMBEDDINGS_FILE = "embeddings.bin"
BANK_SCORES_FILE = "bank_scores.bin"
BANK_FILE = "bank.json"
STORAGE_DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


@dataclass
class IndexInfo:
    """The contents of ``index.json``.

    Attributes:
        count: rows committed (videos in the index).
        complete: False while a ``grounding index`` run has videos left to add.
        num_clips, hidden_size: T and H of the stored clip states (the model's).
        storage: ``float32`` or ``float16``, the clip states' dtype on disk.
        engine, engine_options: the stage-1 engine and its settings.
        videos_bytes: the length of ``videos.jsonl`` at the last commit.
        bank_size: B, the dual-softmax bank's queries (0 = no bank).
        source: where the videos came from (for people; not read back).
    """

    count: int = 0
    complete: bool = False
    num_clips: int = 0
    hidden_size: int = 0
    storage: str = "float32"
    engine: str = "exact"
    engine_options: dict[str, Any] = field(default_factory=dict)
    videos_bytes: int = 0
    bank_size: int = 0
    source: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": INDEX_FORMAT, "version": INDEX_VERSION, **asdict(self)}


def _damaged(folder: Path, problem: str) -> InputError:
    return InputError(
        f"{folder}: {problem}; the index is damaged. Rebuild it with grounding index --out {folder} "
        "(into a new folder, or after removing this one)."
    )


def read_index_info(folder: Path) -> IndexInfo:
    """``index.json`` of ``folder``, checked: InputError naming the folder when it is missing, unreadable or wrong."""
    path = folder / INDEX_FILE
    if not folder.is_dir():
        raise InputError(f"{folder}: no such index folder; build one with grounding index --out {folder}")
    if not path.is_file():
        raise InputError(
            f"{folder}: has no {INDEX_FILE}, so it is not a grounding index (or its first commit never happened); "
            f"build one with grounding index --out {folder}"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(folder, f"{INDEX_FILE} is unreadable ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != INDEX_FORMAT:
        raise InputError(f"{path}: not a grounding index file (format {payload.get('format') if isinstance(payload, dict) else None!r})")
    if payload.get("version") != INDEX_VERSION:
        raise InputError(
            f"{path}: index format version {payload.get('version')!r}, but this grounding reads version {INDEX_VERSION}; "
            "rebuild the index with this version's grounding index"
        )
    known = set(IndexInfo.__dataclass_fields__)
    values = {key: value for key, value in payload.items() if key in known}
    info = IndexInfo(**values)
    for name in ("count", "num_clips", "hidden_size", "videos_bytes", "bank_size"):
        value = getattr(info, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _damaged(folder, f"{INDEX_FILE} has {name}={value!r}, not a count")
    if info.storage not in STORAGE_DTYPES:
        raise _damaged(folder, f"{INDEX_FILE} has storage={info.storage!r}; expected one of {', '.join(STORAGE_DTYPES)}")
    return info


class _RowFile:
    """A raw file of fixed-size rows: read as a memmap of the committed rows, appended past them."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.row_shape = row_shape
        self.dtype = dtype
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize

    def check(self, folder: Path, count: int) -> None:
        size = self.path.stat().st_size if self.path.is_file() else 0
        if size < count * self.row_bytes:
            held = max(size, 0) // self.row_bytes
            raise _damaged(folder, f"{self.path.name} holds {held} rows but {INDEX_FILE} commits {count}")

    def map(self, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(count, *self.row_shape))

    def append(self, count: int, rows: np.ndarray) -> None:
        block = np.ascontiguousarray(rows, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise InputError(f"{self.path.name}: rows of shape {block.shape[1:]}, expected {self.row_shape}")
        with open(self.path, "a+b") as handle:
            handle.truncate(count * self.row_bytes)  # drop an interrupted append's tail
            handle.seek(count * self.row_bytes)
            handle.write(block.tobytes())
            handle.flush()
            os.fsync(handle.fileno())


class VideoIndex:
    """An index folder (layout in the module docstring), opened for reading and appending.

    Create one with :meth:`create`, open one with :meth:`open`. ``video_ids``, ``durations``, ``embeddings``
    (count, H) and :meth:`clip_states` read the committed rows; :meth:`append` adds and commits videos.
    """

    def __init__(self, folder: Path, info: IndexInfo) -> None:
        self.folder = folder
        self.info = info
        storage = STORAGE_DTYPES[info.storage]
        shape = (info.num_clips, info.hidden_size)
        self._clip_file = _RowFile(folder / CLIP_STATES_FILE, shape, storage)
        self._embedding_file = _RowFile(folder / EMBEDDINGS_FILE, (info.hidden_size,), np.dtype("<f4"))
        self._bank_file = _RowFile(folder / BANK_SCORES_FILE, (info.bank_size,), np.dtype("<f4")) if info.bank_size else None
        self._engine: VectorEngine | None = None
        self._load()

    # ---- opening ----
    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        checkpoint: str | os.PathLike[str],
        *,
        num_clips: int,
        hidden_size: int,
        storage: str = "float32",
        engine: str = "exact",
        engine_options: dict[str, Any] | None = None,
        bank_sentences: Sequence[str] = (),
        bank_pooling: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
    ) -> VideoIndex:
        """Start an empty index in ``folder`` (which must not hold one), copying the checkpoint folder in.

        Args:
            folder: the index folder (created).
            checkpoint: the checkpoint folder the videos are encoded with (its files are copied to ``model/``).
            num_clips, hidden_size: T and H of the model.
            storage: ``float32`` (exact) or ``float16`` (half the disk; scores change in the 3rd-4th digit).
            engine, engine_options: the stage-1 engine.
            bank_sentences: the dual-softmax bank (training-split sentences), empty for none.
            bank_pooling: ``{"pooling": ..., "temperature": ...}`` the bank scores are pooled with.
            source: free-form notes on where the videos come from.
        """
        root = Path(folder)
        if (root / INDEX_FILE).exists():
            raise InputError(f"{root}: already holds an index; extend it with --add, or choose another --out")
        if storage not in STORAGE_DTYPES:
            raise InputError(f"storage {storage!r}: use one of {', '.join(STORAGE_DTYPES)}")
        if root.exists() and any(path.name != MODEL_DIR for path in root.iterdir()):
            raise InputError(f"{root}: exists, is not empty and holds no index; choose an empty or new folder")
        root.mkdir(parents=True, exist_ok=True)
        model_dir = root / MODEL_DIR
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(Path(checkpoint), model_dir)
        if bank_sentences:
            payload = {"sentences": list(bank_sentences), **(bank_pooling or {})}
            write_text_atomic(root / BANK_FILE, json.dumps(payload, indent=1) + "\n")
        info = IndexInfo(
            num_clips=num_clips, hidden_size=hidden_size, storage=storage, engine=engine,
            engine_options=dict(engine_options or {}), bank_size=len(bank_sentences), source=dict(source or {}),
        )
        (root / VIDEOS_FILE).touch()
        index = cls(root, info)
        index._commit()
        return index

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> VideoIndex:
        """Open an index folder; InputError naming the folder when it is missing, incomplete on disk or damaged."""
        root = Path(folder)
        return cls(root, read_index_info(root))

    def _load(self) -> None:
        info, folder = self.info, self.folder
        if not (folder / MODEL_DIR).is_dir():
            raise _damaged(folder, f"its {MODEL_DIR}/ checkpoint folder is missing")
        for row_file in (self._clip_file, self._embedding_file, self._bank_file):
            if row_file is not None:
                row_file.check(folder, info.count)
        self.video_ids, self.durations = self._read_videos()
        self.row_of = {video_id: row for row, video_id in enumerate(self.video_ids)}
        if len(self.row_of) != len(self.video_ids):
            raise _damaged(folder, f"{VIDEOS_FILE} lists a video twice")
        self._map_rows()

    def _map_rows(self) -> None:
        """Memmaps of the committed rows (re-made after each append; nothing is read)."""
        count = self.info.count
        self.embeddings = self._embedding_file.map(count)
        self._clip_map = self._clip_file.map(count)
        self.bank_scores = self._bank_file.map(count) if self._bank_file is not None else None

    def _read_videos(self) -> tuple[list[str], np.ndarray]:
        path, count = self.folder / VIDEOS_FILE, self.info.count
        if not path.is_file() or path.stat().st_size < self.info.videos_bytes:
            raise _damaged(self.folder, f"{VIDEOS_FILE} is shorter than its committed {self.info.videos_bytes} bytes")
        with open(path, "rb") as handle:
            text = handle.read(self.info.videos_bytes).decode("utf-8", errors="replace")
        lines = text.splitlines()
        if len(lines) != count:
            raise _damaged(self.folder, f"{VIDEOS_FILE} lists {len(lines)} videos but {INDEX_FILE} commits {count}")
        ids, durations = [], np.empty(count, dtype=np.float64)
        for row, line in enumerate(lines):
            try:
                item = json.loads(line)
                ids.append(str(item["id"]))
                durations[row] = float(item["duration"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise _damaged(self.folder, f"{VIDEOS_FILE} line {row + 1} is not {{\"id\", \"duration\"}} JSON") from None
        return ids, durations

    # ---- reading ----
    def __len__(self) -> int:
        return self.info.count

    def __repr__(self) -> str:
        return (f"VideoIndex('{self.folder}', videos={self.info.count}, engine={self.info.engine!r}, "
                f"bank={self.info.bank_size})")

    @property
    def model_folder(self) -> Path:
        return self.folder / MODEL_DIR

    @property
    def bank(self) -> dict[str, Any] | None:
        """``bank.json`` (sentences, pooling, temperature), or None without a bank."""
        if not self.info.bank_size:
            return None
        return json.loads((self.folder / BANK_FILE).read_text(encoding="utf-8"))

    def clip_states(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """(R, T, H) float32 stored clip states of the given rows (read from disk; nothing else is loaded)."""
        return np.asarray(self._clip_map[np.asarray(rows, dtype=np.int64)], dtype=np.float32)

    @property
    def engine(self) -> VectorEngine:
        """The stage-1 engine, opened and synced with the committed rows on first use."""
        if self._engine is None:
            folder = self.folder / f"engine-{self.info.engine}"
            self._engine = open_engine(
                self.info.engine, folder, self.info.hidden_size, self.embeddings, **self.info.engine_options
            )
            sync_engine(self._engine, self.embeddings, self.info.count)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> VideoIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ----
    def append(
        self,
        video_ids: Sequence[str],
        durations: Sequence[float],
        clip_states: np.ndarray,
        embeddings: np.ndarray,
        bank_scores: np.ndarray | None = None,
    ) -> None:
        """Add videos and commit them.

        Args:
            video_ids: n new ids (not in the index yet).
            durations: n lengths in seconds (> 0).
            clip_states: (n, T, H) float, the model's :meth:`~grounding.model.GroundingModel.encode_clips`.
            embeddings: (n, H) float, :meth:`~grounding.model.GroundingModel.embed_video`.
            bank_scores: (n, B) float32 pooled log-scores of the bank's queries, when the index has a bank.
        """
        count, n = self.info.count, len(video_ids)
        if n == 0:
            return
        duplicates = [video_id for video_id in video_ids if video_id in self.row_of]
        if duplicates or len(set(video_ids)) != n:
            raise InputError(f"{self.folder}: video '{(duplicates or list(video_ids))[0]}' is already in the index")
        checked = np.asarray(durations, dtype=np.float64)
        if checked.shape != (n,) or not np.all(np.isfinite(checked)) or np.any(checked <= 0):
            raise InputError(f"durations: expected {n} lengths in seconds > 0, got {durations!r}")
        if (self._bank_file is None) != (bank_scores is None):
            raise InputError(f"{self.folder}: bank scores must be given exactly when the index has a bank")
        lines = "".join(json.dumps({"id": video_id, "duration": float(seconds)}) + "\n"
                        for video_id, seconds in zip(video_ids, checked))
        for row_file, rows in ((self._clip_file, clip_states), (self._embedding_file, embeddings),
                               (self._bank_file, bank_scores)):
            if row_file is not None:
                if len(rows) != n:
                    raise InputError(f"{row_file.path.name}: {len(rows)} rows for {n} videos")
                row_file.append(count, np.asarray(rows))
        with open(self.folder / VIDEOS_FILE, "a+b") as handle:
            handle.truncate(self.info.videos_bytes)
            handle.seek(self.info.videos_bytes)
            encoded = lines.encode("utf-8")
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
        new_embeddings = self._embedding_file.map(count + n)
        if self._engine is not None:  # flushed at close (a faiss flush rewrites its whole file); a crash before
            sync_engine(self._engine, new_embeddings, count + n, flush=False)  # that is repaired by sync on open
        self.info.count += n
        self.info.videos_bytes += len(encoded)
        self._commit()
        # the new rows in memory too: re-reading videos.jsonl after every chunk would make a build quadratic
        self.row_of.update({video_id: count + offset for offset, video_id in enumerate(video_ids)})
        self.video_ids = self.video_ids + list(video_ids)
        self.durations = np.concatenate([self.durations, checked])
        self._map_rows()

    def set_complete(self, complete: bool) -> None:
        """Mark whether every video of the run that builds the index is in (``grounding index`` resumes otherwise)."""
        self.info.complete = complete
        self._commit()

    def _commit(self) -> None:
        write_text_atomic(self.folder / INDEX_FILE, json.dumps(self.info.to_json(), indent=1) + "\n")


def missing_from(index: VideoIndex, video_ids: Iterable[str]) -> list[str]:
    """The ids not in ``index`` yet, in the given order, each once."""
    return [video_id for video_id in dict.fromkeys(video_ids) if video_id not in index.row_of]
