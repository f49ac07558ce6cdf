"""Draw a :class:`VideoScript` into RGB frames and write them as an H.264 mp4 with PyAV.

Rendering is a pure function of the script and the frame geometry: every random choice (background grain,
pixel noise, flicker jitter) comes from the script's ``background.texture_seed``.

Shapes are analytic signed distances evaluated on the object's bounding box only, cached per quantized radius,
angle and sub-pixel offset (``FramePainter``); frames are composited channel-first. A 160x160 frame with four
objects and four distractors costs about 0.4 ms to draw and 0.6 ms to encode on one core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

from grounding.files import atomic_path
from grounding.video.synth.world import COLOURS, Event, SceneObject, VideoScript

# Motion constants, in frame sizes per second (or radians per second): large enough that an object's position
# differs clearly between two consecutive 1 s clips.
MOVE_SPEED = 0.2  # frame widths (left/right) or heights (up/down) per second; objects wrap around the border
SPIN_SPEED = np.pi  # half a turn per second
SIZE_FACTOR = 1.6  # grow multiplies the size by this over the event; shrink divides by it
JUMP_HEIGHT = 0.18  # frame heights
HOP_SECONDS = 0.8  # a jump event makes round(length / HOP_SECONDS) hops, at least one
SHAKE_AMPLITUDE = 0.05  # frame widths
SHAKE_HZ = 2.0
COLOUR_RAMP_SECONDS = 0.4
IDLE_BOB = 0.01  # frame heights: a slow bob of every object, so "something moves" is never the whole signal

_MARKER_OFFSET = 0.5  # a dark dot on every object, at this fraction of its radius towards its "top": spin shows
_MARKER_RADIUS = 0.2
_MARKER_DARKEN = 0.6


@dataclass
class ObjectTrack:
    """An object's appearance over the video's frames (all arrays have T entries, T = number of frames).

    cx, cy: centre in pixels (T,), not yet wrapped into the frame; radius: pixels (T,); angle: radians (T,),
    counter-clockwise; alpha: opacity 0..1 (T,); colour: RGB 0..255 (T, 3) float32.
    """

    shape: str
    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray
    colour: np.ndarray


def frame_times(duration: float, fps: int) -> np.ndarray:
    """Timestamps in seconds of the video's frames, (T,) float64 with T = round(duration * fps)."""
    return np.arange(round(duration * fps), dtype=np.float64) / fps


def object_tracks(script: VideoScript, width: int, height: int, fps: int) -> list[ObjectTrack]:
    """One :class:`ObjectTrack` per ``script.objects`` entry, with every event's effect applied."""
    times = frame_times(script.duration, fps)
    tracks = []
    for index, obj in enumerate(script.objects):
        events = [event for event in script.events if event.obj == index]
        tracks.append(_track(obj, index, events, times, width, height))
    return tracks


def _track(
    obj: SceneObject, index: int, events: list[Event], times: np.ndarray, width: int, height: int
) -> ObjectTrack:
    count = len(times)
    cx = np.full(count, obj.x * width)
    cy = np.full(count, obj.y * height) + IDLE_BOB * height * np.sin(2 * np.pi * times / 3.0 + 1.7 * index)
    scale = np.ones(count)
    angle = np.zeros(count)
    alpha = np.ones(count)
    colour = np.tile(np.asarray(COLOURS[obj.colour], dtype=np.float64), (count, 1))
    for event in events:
        length = event.end - event.start
        elapsed = np.clip(times - event.start, 0.0, length)  # seconds into the event, held after it ends
        progress = elapsed / length
        inside = (times >= event.start) & (times < event.end)
        action = event.action
        if action == "move-left":
            cx -= MOVE_SPEED * width * elapsed
        elif action == "move-right":
            cx += MOVE_SPEED * width * elapsed
        elif action == "move-up":
            cy -= MOVE_SPEED * height * elapsed
        elif action == "move-down":
            cy += MOVE_SPEED * height * elapsed
        elif action == "grow":
            scale *= SIZE_FACTOR**progress
        elif action == "shrink":
            scale /= SIZE_FACTOR**progress
        elif action == "spin":
            angle += SPIN_SPEED * elapsed
        elif action == "jump":
            hops = max(1, round(length / HOP_SECONDS))
            cy -= inside * JUMP_HEIGHT * height * np.abs(np.sin(np.pi * hops * progress))
        elif action == "shake":
            cycles = max(1, round(length * SHAKE_HZ))
            # cos, not sin: at 4 fps a 2 Hz sine is sampled only at its zeros.
            cx += inside * SHAKE_AMPLITUDE * width * np.cos(2 * np.pi * cycles * progress)
        elif action == "change-colour":
            assert event.target_colour is not None
            ramp = min(COLOUR_RAMP_SECONDS, length / 3)
            weight = np.clip(np.minimum(times - event.start, event.end - times) / ramp, 0.0, 1.0) * inside
            target = np.asarray(COLOURS[event.target_colour], dtype=np.float64)
            colour = colour * (1 - weight[:, None]) + target * weight[:, None]
        elif action == "appear":
            alpha *= progress
            scale *= 0.3 + 0.7 * progress
        elif action == "disappear":
            alpha *= 1 - progress
            scale *= 1 - 0.7 * progress
        else:  # pragma: no cover - world.ACTIONS and this chain are kept in step by the tests
            raise AssertionError(f"unknown action {action!r}")
    return ObjectTrack(
        shape=obj.shape,
        cx=cx,
        cy=cy,
        radius=obj.radius * height * scale,
        angle=angle,
        alpha=alpha,
        colour=colour.astype(np.float32),
    )


def distractor_tracks(script: VideoScript, width: int, height: int, fps: int) -> list[ObjectTrack]:
    """Tracks of the faint background shapes: constant drift for the whole video."""
    times = frame_times(script.duration, fps)
    tracks = []
    for item in script.distractors:
        tracks.append(
            ObjectTrack(
                shape=item.shape,
                cx=(item.x + item.vx * times) * width,
                cy=(item.y + item.vy * times) * height,
                radius=np.full(len(times), item.radius * height),
                angle=np.zeros(len(times)),
                alpha=np.full(len(times), item.alpha),
                colour=np.full((len(times), 3), item.grey, dtype=np.float32),
            )
        )
    return tracks


# --- shapes: signed distance in units of the object's radius, negative inside -------------------------------

_TRIANGLE_NORMALS = np.array([[0.0, -1.0], [np.cos(np.pi / 6), 0.5], [-np.cos(np.pi / 6), 0.5]])
_STAR_TIP, _STAR_INNER = 1.35, 0.6
_STAR_HALF_SECTOR = np.pi / 5


def _star_edge() -> tuple[np.ndarray, np.ndarray]:
    tip = np.array([_STAR_TIP, 0.0])
    inner = _STAR_INNER * np.array([np.cos(_STAR_HALF_SECTOR), np.sin(_STAR_HALF_SECTOR)])
    direction = inner - tip
    normal = np.array([direction[1], -direction[0]])
    return tip, normal / np.linalg.norm(normal)


_STAR_TIP_POINT, _STAR_NORMAL = _star_edge()


def shape_distance(shape: str, u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Signed distance (radius units, < 0 inside) of ``shape`` at local points; ``u`` right, ``w`` up, same shape."""
    if shape == "circle":
        return np.hypot(u, w) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(w)) - 0.85
    if shape == "diamond":
        return (np.abs(u) + np.abs(w) - 1.15) / np.sqrt(2.0)
    if shape == "cross":
        arm_a = np.maximum(np.abs(u) - 0.38, np.abs(w) - 1.05)
        arm_b = np.maximum(np.abs(u) - 1.05, np.abs(w) - 0.38)
        return np.minimum(arm_a, arm_b)
    if shape == "triangle":
        # An equilateral triangle pointing up, circumradius 1.4, centred on its centroid.
        return np.max([n[0] * u + n[1] * w for n in _TRIANGLE_NORMALS], axis=0) - 0.7
    if shape == "star":
        # Fold the angle (measured from "up") into one tip's half sector; distance to that tip's edge.
        rho = np.hypot(u, w)
        phi = np.arctan2(u, w)
        sector = 2 * _STAR_HALF_SECTOR
        folded = np.abs(np.mod(phi + _STAR_HALF_SECTOR, sector) - _STAR_HALF_SECTOR)
        qx, qy = rho * np.cos(folded), rho * np.sin(folded)
        return (qx - _STAR_TIP_POINT[0]) * _STAR_NORMAL[0] + (qy - _STAR_TIP_POINT[1]) * _STAR_NORMAL[1]
    raise AssertionError(f"unknown shape {shape!r}")


@dataclass(frozen=True)
class _Stamp:
    """A shape's masks on a square box of ``2 * half + 1`` pixels whose centre pixel holds the object's centre.

    coverage: (n, n) float32 opacity 0..1 of the shape; shade: (n, n) float32 factor 0.4..1 (the dark marker
    dot) or None for unmarked shapes.
    """

    half: int
    coverage: np.ndarray
    shade: np.ndarray | None


class FramePainter:
    """Alpha-composites shapes onto channel-first float32 frames ``(3, height, width)``; objects wrap around.

    Channel-first because numpy broadcasts an RGB colour over a (3, h, w) box about five times faster than
    over an (h, w, 3) box, whose innermost loop would be 3 long.

    The masks of a shape depend only on its radius, angle and sub-pixel offset; they are computed once per
    quantized value (radius and offset to 1/4 pixel, angle to 0.01 radian) and reused from a small cache, so an
    object that only moves costs two array slices and one blend per frame.
    """

    _QUANTUM = 4  # sub-pixel steps per pixel, for the centre and the radius
    _CACHE_SIZE = 512

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._stamps: dict[tuple[str, int, int, int, int, bool], _Stamp] = {}

    def paint(self, frame: np.ndarray, track: ObjectTrack, t: int, marker: bool) -> None:
        """Draw ``track`` at frame index ``t`` into ``frame`` (3, H, W) float32, in place."""
        alpha = float(track.alpha[t])
        radius = float(track.radius[t])
        if alpha <= 0.0 or radius < 0.5:
            return
        q = self._QUANTUM
        cx = round((float(track.cx[t]) % self.width) * q) / q
        cy = round((float(track.cy[t]) % self.height) * q) / q
        stamp = self._stamp(track.shape, radius, float(track.angle[t]), cx % 1.0, cy % 1.0, marker)
        colour = track.colour[t][:, None, None]  # (3, 1, 1)
        base_x, base_y = int(cx) - stamp.half, int(cy) - stamp.half
        size = 2 * stamp.half + 1
        for shift_x in (-self.width, 0, self.width):
            for shift_y in (-self.height, 0, self.height):
                left, top = base_x + shift_x, base_y + shift_y
                x0, x1 = max(0, left), min(self.width, left + size)
                y0, y1 = max(0, top), min(self.height, top + size)
                if x0 >= x1 or y0 >= y1:
                    continue
                cut = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
                region = frame[:, y0:y1, x0:x1]
                paint = colour if stamp.shade is None else stamp.shade[cut] * colour
                blend = paint - region  # (3, h, w)
                blend *= stamp.coverage[cut] * alpha
                region += blend

    def _stamp(self, shape: str, radius: float, angle: float, frac_x: float, frac_y: float, marker: bool) -> _Stamp:
        q = self._QUANTUM
        angle_key = round((angle % (2 * np.pi)) * 100)
        key = (shape, round(radius * q), angle_key, round(frac_x * q), round(frac_y * q), marker)
        stamp = self._stamps.get(key)
        if stamp is None:
            if len(self._stamps) >= self._CACHE_SIZE:
                self._stamps.clear()
            stamp = _make_stamp(shape, round(radius * q) / q, angle_key / 100, frac_x, frac_y, marker)
            self._stamps[key] = stamp
        return stamp


def _make_stamp(shape: str, radius: float, angle: float, frac_x: float, frac_y: float, marker: bool) -> _Stamp:
    """Masks of ``shape`` centred at ``(half + frac_x, half + frac_y)`` pixels of its box; every shape fits in
    1.4 radii, so ``half = ceil(1.45 * radius) + 1``."""
    radius = max(radius, 0.25)
    half = int(np.ceil(1.45 * radius)) + 1
    offsets = np.arange(-half, half + 1, dtype=np.float32) + 0.5
    dx = (offsets[None, :] - frac_x) / radius  # (1, n)
    dy = (frac_y - offsets[:, None]) / radius  # (n, 1); image y grows down, local w grows up
    if angle == 0.0:  # most objects most of the time: the (1, n) and (n, 1) grids broadcast in the shape
        u, w = dx, dy
    else:
        cos_a, sin_a = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        u = cos_a * dx + sin_a * dy
        w = -sin_a * dx + cos_a * dy
    coverage = np.clip(0.5 - shape_distance(shape, u, w) * radius, 0.0, 1.0).astype(np.float32)
    shade = None
    if marker:
        dot = np.clip(0.5 - (np.hypot(u, w - _MARKER_OFFSET) - _MARKER_RADIUS) * radius, 0.0, 1.0)
        shade = (1.0 - _MARKER_DARKEN * dot).astype(np.float32)
    return _Stamp(half=half, coverage=coverage, shade=shade)


def background_texture(script: VideoScript, width: int, height: int, pad: int) -> np.ndarray:
    """The static background, ``pad`` pixels larger on each side so it can drift: (3, H+2p, W+2p) float32."""
    bg = script.background
    rng = np.random.default_rng(bg.texture_seed)
    ys, xs = np.mgrid[0 : height + 2 * pad, 0 : width + 2 * pad].astype(np.float32)
    along = (xs * np.cos(bg.angle) + ys * np.sin(bg.angle)) / width  # frame widths along the pattern direction
    across = (-xs * np.sin(bg.angle) + ys * np.cos(bg.angle)) / width
    if bg.kind == "gradient":
        mix = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif bg.kind == "stripes":
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * along / bg.period)
    elif bg.kind == "checker":
        mix = (np.floor(along / bg.period) + np.floor(across / bg.period)) % 2
    elif bg.kind == "blotches":
        mix = np.zeros_like(xs)
        for _ in range(4):
            freq = rng.uniform(0.5, 3.0, size=2)
            mix += np.sin(2 * np.pi * (freq[0] * xs / width + freq[1] * ys / height) + rng.uniform(0, 2 * np.pi))
        mix = (mix - mix.min()) / max(float(np.ptp(mix)), 1e-6)
    else:  # pragma: no cover - world._draw_background picks from the list above
        raise AssertionError(f"unknown background {bg.kind!r}")
    colour_a = np.asarray(bg.colour_a, dtype=np.float32)[:, None, None]  # (3, 1, 1)
    colour_b = np.asarray(bg.colour_b, dtype=np.float32)[:, None, None]
    texture = colour_a + mix[None].astype(np.float32) * (colour_b - colour_a)
    grain = rng.normal(0.0, 4.0, size=mix.shape).astype(np.float32)
    return texture + grain[None]


def render_frames(script: VideoScript, width: int, height: int, fps: int) -> Iterator[np.ndarray]:
    """Yield the video's frames in order, each (height, width, 3) uint8 RGB; there are round(duration * fps)."""
    pad = 24
    texture = background_texture(script, width, height, pad)
    rng = np.random.default_rng(script.background.texture_seed + 1)
    noise_bank = rng.normal(0.0, script.noise, size=(8, 3, height, width)).astype(np.float32)
    times = frame_times(script.duration, fps)
    flicker_phase = rng.uniform(0, 2 * np.pi)
    gains = (
        1.0
        + script.flicker * np.sin(2 * np.pi * 0.7 * times + flicker_phase)
        + 0.3 * script.flicker * rng.uniform(-1, 1, size=len(times))
    ).astype(np.float32)
    noise_pick = rng.integers(len(noise_bank), size=len(times))
    offsets_x = _ping_pong(script.background.drift_x * times, pad)
    offsets_y = _ping_pong(script.background.drift_y * times, pad)
    painter = FramePainter(width, height)
    clutter = distractor_tracks(script, width, height, fps)
    actors = object_tracks(script, width, height, fps)
    for t in range(len(times)):
        ox, oy = pad + int(offsets_x[t]), pad + int(offsets_y[t])
        frame = texture[:, oy : oy + height, ox : ox + width].copy()  # (3, H, W)
        for track in clutter:
            painter.paint(frame, track, t, marker=False)
        for track in actors:
            painter.paint(frame, track, t, marker=True)
        frame *= gains[t]
        frame += noise_bank[noise_pick[t]]
        planes = np.clip(frame, 0.0, 255.0, out=frame).astype(np.uint8)
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        for channel in range(3):  # three plane copies: several times faster than one transposing copy
            rgb[..., channel] = planes[channel]
        yield rgb


def _ping_pong(offsets: np.ndarray, limit: int) -> np.ndarray:
    """Fold offsets (pixels) into [-limit, limit] by bouncing at the ends."""
    period = 4 * limit
    phase = np.mod(offsets + limit, period)
    return np.where(phase < 2 * limit, phase, period - phase) - limit


def write_mp4(frames: Iterator[np.ndarray], path: str | os.PathLike[str], width: int, height: int, fps: int) -> int:
    """Encode RGB frames (H, W, 3) uint8 as H.264 into an mp4 at ``path``; returns the number of frames written.

    libx264 ``veryfast`` at CRF 23, yuv420p, one thread per process, no B-frames: about 0.6 ms and 1.1 kB
    per 160x160 frame (``ultrafast`` is a little faster but 2-3 times larger on the noisy, drifting backgrounds).
    B-frames are off because x264's adaptive B-frame decision gave different bytes for the same frames in
    repeated runs (libx264 through PyAV 18); without them the same frames always give the same file.
    Keyframes every 2 s keep seeking cheap for clip-wise decoding.
    """
    import av

    count = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 2 * fps
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"preset": "veryfast", "crf": "23", "x264-params": "bframes=0"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = count
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        for packet in stream.encode(None):
            container.mux(packet)
    return count


def render_video(script: VideoScript, path: str | os.PathLike[str], width: int, height: int, fps: int) -> int:
    """Render ``script`` into the mp4 ``path`` through a temporary file and a rename (a crash leaves no half file).

    Returns the number of frames written.
    """
    with atomic_path(path) as temporary:  # hidden, ending in .mp4 (the muxer picks the format from the name)
        return write_mp4(render_frames(script, width, height, fps), temporary, width, height, fps)
