"""Oracle clip features for a rendered world: the scripted state of every object, instead of a backbone's view.

Writes an HDF5 file in the layout ``grounding extract`` writes (one ``[T, D]`` dataset per video id, one row per
clip, 1 second unless --clip-seconds says otherwise), where each clip's row holds, for each object slot (padded to the most objects in any video):
centre x/y, radius, sin/cos of the angle, opacity, RGB colour, the change of those 9 values since the previous
clip (x5), and a one-hot shape. Training on it (``grounding train ... data.features=<this file>
model.input_dim=<D>``) tells how far the model gets when the video side is perfect, which separates feature
problems from model problems. It re-plans the world from its seed, so pass the same --videos/--seed as synth.

    python benchmarks/world_oracle_features.py --videos 300 --seed 0 --out worlds/w300/features-oracle.h5
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np

from grounding.video.synth.dataset import SynthConfig, plan_dataset
from grounding.video.synth.render import frame_times, object_tracks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, required=True, help="--videos given to grounding synth")
    parser.add_argument("--seed", type=int, default=0, help="--seed given to grounding synth (default 0)")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--clip-seconds", type=float, default=1.0,
                        help="seconds per clip, as grounding extract's --clip-seconds (default 1)")
    args = parser.parse_args()
    config = SynthConfig(seed=args.seed, num_videos=args.videos)
    plan = plan_dataset(config)
    shapes = sorted({obj.shape for script in plan.scripts for obj in script.objects})
    max_objects = max(len(script.objects) for script in plan.scripts)
    slot_width = 18 + len(shapes)
    width, height, fps = config.width, config.height, config.fps
    with h5py.File(args.out, "w") as handle:
        for script in plan.scripts:
            tracks = object_tracks(script, width, height, fps)
            num_frames = len(frame_times(script.duration, fps))
            num_clips = max(1, int(np.ceil(script.duration / args.clip_seconds - 1e-9)))
            centres = (np.arange(num_clips) + 0.5) * args.clip_seconds
            frame_at_centre = np.minimum(centres * fps, num_frames - 1).astype(int)
            slots = []
            for slot in range(max_objects):
                if slot >= len(tracks):
                    slots.append(np.zeros((num_clips, slot_width)))
                    continue
                track = tracks[slot]
                state = np.concatenate([
                    np.stack([
                        track.cx[frame_at_centre] / width, track.cy[frame_at_centre] / height,
                        track.radius[frame_at_centre] / width, np.sin(track.angle[frame_at_centre]),
                        np.cos(track.angle[frame_at_centre]), track.alpha[frame_at_centre],
                    ], axis=1),
                    track.colour[frame_at_centre] / 255.0,
                ], axis=1)  # (clips, 9)
                change = np.diff(state, axis=0, prepend=state[:1]) * 5.0 / args.clip_seconds
                shape = np.zeros((num_clips, len(shapes)))
                shape[:, shapes.index(track.shape)] = 1.0
                slots.append(np.concatenate([state, change, shape], axis=1))
            dataset = handle.create_dataset(script.video_id, data=np.concatenate(slots, axis=1).astype(np.float32))
            dataset.attrs["clip_centres"] = centres
    print(f"wrote {args.out}: {len(plan.scripts)} videos, D = {slot_width * max_objects} "
          f"({max_objects} object slots x {slot_width})")


if __name__ == "__main__":
    main()
