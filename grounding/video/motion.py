"""Motion backbones on 4 frames per clip: ``efficientnet-lite0-motion`` (appearance plus the middle frame masked
to what moves, 2560-d) and ``efficientnet-lite0-motion-flow`` (plus a coarse flow of the region that moves most,
2577-d). Both assume a static camera.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from grounding.errors import InputError
from grounding.video.backbone_registry import register_backbone
from grounding.video.efficientnet import efficientnet_lite0_network


class MotionGatedFeatures(nn.Module):
    """Appearance plus "what moves": F frames of one clip in, two pooled EfficientNet vectors out.

    A frozen image network pools the whole frame, so when several objects are on screen it cannot say which
    of them acts (the rendered world's linear probe: 0.13 action accuracy against a 0.11 majority rate). This
    module also encodes the middle frame masked to where the clip's frames differ, a cheap stand-in for the
    motion stream of two-stream networks (TSN's RGB difference, optical flow):

    1. every frame minus its own mean colour (a global brightness flicker is not motion);
    2. for every pair of the F frames, the absolute difference summed over R, G, B and box-blurred
       (``blur`` pixels wide), so one-pixel edges of a jittering object fall below the threshold while an
       object that moves, turns, changes colour or size does not; the maximum over pairs;
    3. a mask where that exceeds ``threshold`` (0-255 pixel units, summed over channels), dilated by ``blur``;
    4. the middle frame with everything outside the mask set to mid-grey (0 after normalisation).

    Output: ``[pool(middle frame), pool(masked middle frame)]``. Designed for a static camera: with camera
    motion the mask covers most of the frame and the second half approaches the first.

    Args:
        network: an ``efficientnet_lite_pytorch.EfficientNet``.
        frames_per_input: F >= 2 frames per clip (evenly spaced in it by ``grounding extract``).
        threshold: motion threshold in pixel units summed over R, G, B (default 70).
        blur_fraction: blur and dilation width as a fraction of the frame height (default 1/18: 9 px at 160).
        pixel_scale: the normalisation's std, to turn normalised differences back into pixel units.

    Shapes:
        - input: normalised pixels ``(N * F, 3, H, W)``, the F frames of each clip consecutive
        - output: ``(N, 2 * 1280)``
    """

    def __init__(
        self,
        network: nn.Module,
        frames_per_input: int = 4,
        threshold: float = 70.0,
        blur_fraction: float = 1.0 / 18.0,
        pixel_scale: float = 128.0,
    ) -> None:
        super().__init__()
        if frames_per_input < 2:
            raise InputError(f"MotionGatedFeatures needs >= 2 frames per clip, got {frames_per_input}.")
        self.network = network
        self.frames_per_input = frames_per_input
        self.threshold = threshold
        self.blur_fraction = blur_fraction
        self.pixel_scale = pixel_scale

    def _blur_width(self, height: int) -> int:
        return max(1, int(round(height * self.blur_fraction))) | 1  # odd, so the window centres on the pixel

    def motion_magnitude(self, clips: Tensor) -> Tensor:
        """``(N, F, 3, H, W)`` normalised frames -> ``(N, 1, H, W)`` blurred change in pixel units (steps 1-2)."""
        num_frames, height = clips.shape[1], clips.shape[-2]
        width = self._blur_width(height)
        centred = clips - clips.mean(dim=(-2, -1), keepdim=True)
        magnitude = None
        for first in range(num_frames - 1):
            change = (centred[:, first + 1 :] - centred[:, first : first + 1]).abs().sum(dim=2)  # (N, F-1-first, H, W)
            change = change.amax(dim=1, keepdim=True)
            magnitude = change if magnitude is None else torch.maximum(magnitude, change)
        return nn.functional.avg_pool2d(magnitude * self.pixel_scale, width, stride=1, padding=width // 2)

    def mask_from_magnitude(self, magnitude: Tensor) -> Tensor:
        """``(N, 1, H, W)`` change -> float mask, 1 where it exceeds the threshold, dilated (step 3)."""
        width = self._blur_width(magnitude.shape[-2])
        return nn.functional.max_pool2d((magnitude > self.threshold).float(), width, stride=1, padding=width // 2)

    def motion_mask(self, clips: Tensor) -> Tensor:
        """``(N, F, 3, H, W)`` normalised frames -> ``(N, 1, H, W)`` float mask, 1 where something moves."""
        return self.mask_from_magnitude(self.motion_magnitude(clips))

    def forward(self, pixels: Tensor) -> Tensor:
        clips = pixels.view(-1, self.frames_per_input, *pixels.shape[1:])  # (N, F, 3, H, W)
        middle = clips[:, self.frames_per_input // 2]
        masked = middle * self.motion_mask(clips)
        feature_map = self.network.extract_features(torch.cat([middle, masked]))  # (2N, 1280, h, w)
        pooled = feature_map.mean(dim=(-2, -1))
        appearance, moving = pooled.chunk(2)
        return torch.cat([appearance, moving], dim=1)

    def extra_repr(self) -> str:
        return (
            f"frames_per_input={self.frames_per_input}, threshold={self.threshold}, "
            f"blur_fraction={self.blur_fraction:.3f}"
        )


@register_backbone("efficientnet-lite0-motion", dim=2 * 1280, mean=127.0, std=128.0, frames_per_input=4)
def efficientnet_lite0_motion(device: str) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet) on 4 frames per clip: [middle frame ; middle frame masked to motion], 2560-d."""
    return MotionGatedFeatures(efficientnet_lite0_network(device), frames_per_input=4)


def crop_squares(frames: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Bilinear crops of square boxes, resized to ``size`` x ``size``; outside the frame reads as 0.

    Args:
        frames: (N, C, H, W).
        boxes: (N, 3) float ``(centre_x, centre_y, side)`` in pixels.
        size: output side in pixels.

    Returns:
        (N, C, size, size).
    """
    num, _, height, width = frames.shape
    steps = (torch.arange(size, dtype=frames.dtype, device=frames.device) + 0.5) / size - 0.5  # (size,) in (-0.5, 0.5)
    xs = boxes[:, None, 0] + steps[None] * boxes[:, None, 2]  # (N, size) pixel coordinates
    ys = boxes[:, None, 1] + steps[None] * boxes[:, None, 2]
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges
    grid_x = (2 * xs / width - 1)[:, None, :].expand(num, size, size)
    grid_y = (2 * ys / height - 1)[:, :, None].expand(num, size, size)
    grid = torch.stack([grid_x, grid_y], dim=-1)
    return nn.functional.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def phase_correlation_shift(first: Tensor, second: Tensor) -> Tensor:
    """Dominant translation from ``first`` to ``second`` by phase correlation, and how clear it is.

    Args:
        first, second: (N, S, S) grey images.

    Returns:
        (N, 3): ``(dx, dy)`` as fractions of S (in ``[-0.5, 0.5)``; ``dx > 0``: content moved right, ``dy > 0``:
        down) and the correlation peak height in ``[0, 1]``.
    """
    side = first.shape[-1]
    window = torch.hann_window(side, periodic=False, dtype=first.dtype, device=first.device)
    window = window[:, None] * window[None, :]
    spectra = [torch.fft.rfft2((image - image.mean(dim=(-2, -1), keepdim=True)) * window) for image in (first, second)]
    cross = spectra[1] * spectra[0].conj()
    correlation = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-8), s=(side, side)).flatten(1)  # (N, S*S)
    peak, index = correlation.max(dim=1)
    dy, dx = (index // side).to(first.dtype), (index % side).to(first.dtype)
    dx = torch.where(dx >= side / 2, dx - side, dx) / side
    dy = torch.where(dy >= side / 2, dy - side, dy) / side
    return torch.stack([dx, dy, peak.clamp(0.0, 1.0)], dim=1)


class MotionFlowFeatures(MotionGatedFeatures):
    """:class:`MotionGatedFeatures` plus a coarse flow of the region that moves most: where it is and where it goes.

    Pooled CNN features say what moves, hardly where it goes: on the rendered world a linear probe reads the
    scripted action from the 2560 motion-gated values with 0.31 held-out accuracy, from the 8 numbers of a
    prototype of this vector alone with 0.42. Per clip:

    1. the motion mask of :class:`MotionGatedFeatures`, split into connected regions; the region with the most
       change is the actor (scipy's ``ndimage.label``);
    2. a square box around it (``margin`` times its larger side, at least ``min_side`` of the frame height);
    3. inside that box, the translation between consecutive frames and from the first to the last frame, by
       phase correlation on grey ``shift_size`` crops (fractions of the box, and the correlation peak, which
       drops when the content turns, scales or changes colour rather than shifting).

    Motion vector (``5 + 3 * F`` values for F frames): moved (0/1), box centre x and y and side (fractions of the
    frame), mask area (fraction of the frame), then ``(dx, dy, peak)`` for each consecutive pair of frames and for
    first -> last. All zero for a clip where nothing moves. Static camera assumed, as for the mask.

    Output: ``[pool(middle frame) (1280), pool(middle frame masked to motion) (1280), motion vector]``.

    Args:
        network: an ``efficientnet_lite_pytorch.EfficientNet``.
        frames_per_input: F >= 2 frames per clip.
        shift_size: side of the grey crops for phase correlation (default 64).
        margin, min_side: box size (default 1.6 and 0.25).
        threshold, blur_fraction, pixel_scale: the motion mask's (:class:`MotionGatedFeatures`).

    Shapes:
        - input: normalised pixels ``(N * F, 3, H, W)``, the F frames of each clip consecutive
        - output: ``(N, 2 * 1280 + 5 + 3 * F)``
    """

    def __init__(
        self,
        network: nn.Module,
        frames_per_input: int = 4,
        shift_size: int = 64,
        margin: float = 1.6,
        min_side: float = 0.25,
        threshold: float = 70.0,
        blur_fraction: float = 1.0 / 18.0,
        pixel_scale: float = 128.0,
    ) -> None:
        super().__init__(network, frames_per_input, threshold, blur_fraction, pixel_scale)
        self.shift_size = shift_size
        self.margin = margin
        self.min_side = min_side

    @staticmethod
    def motion_dim(frames_per_input: int) -> int:
        return 5 + 3 * frames_per_input

    def actor_boxes(self, mask: Tensor, magnitude: Tensor) -> tuple[Tensor, Tensor]:
        """Square box around the connected moving region with the most change, per clip.

        Args:
            mask: (N, 1, H, W) from :meth:`mask_from_magnitude`; magnitude: (N, 1, H, W) from :meth:`motion_magnitude`.

        Returns:
            boxes (N, 3) ``(centre_x, centre_y, side)`` in pixels (the whole frame where nothing moves) and
            found (N,) bool.
        """
        from scipy import ndimage

        num, _, height, width = mask.shape
        magnitude_np = magnitude[:, 0].detach().cpu().double().numpy()
        mask_np = mask[:, 0].detach().cpu().numpy() > 0
        boxes = torch.tensor([[width / 2, height / 2, float(max(height, width))]], dtype=torch.float64).repeat(num, 1)
        found = torch.zeros(num, dtype=torch.bool)
        for clip in range(num):
            labels, count = ndimage.label(mask_np[clip])
            if count == 0:
                continue
            totals = ndimage.sum_labels(magnitude_np[clip], labels, index=range(1, count + 1))
            rows, cols = np.nonzero(labels == int(np.argmax(totals)) + 1)
            top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            side = max(self.margin * max(bottom - top, right - left), self.min_side * height)
            boxes[clip] = torch.tensor([(left + right) / 2, (top + bottom) / 2, side], dtype=torch.float64)
            found[clip] = True
        return boxes.to(magnitude), found.to(magnitude.device)

    def motion_vector(self, clips: Tensor, magnitude: Tensor, mask: Tensor) -> Tensor:
        """``(N, F, 3, H, W)`` frames -> ``(N, 5 + 3F)`` motion vector (see the class docstring)."""
        num, num_frames, _, height, width = clips.shape
        boxes, found = self.actor_boxes(mask, magnitude)
        grey = torch.stack(
            [crop_squares(clips[:, frame], boxes, self.shift_size).mean(dim=1) for frame in range(num_frames)], dim=1
        )  # (N, F, S, S)
        pairs = [(frame, frame + 1) for frame in range(num_frames - 1)] + [(0, num_frames - 1)]
        shifts = [phase_correlation_shift(grey[:, first], grey[:, second]) for first, second in pairs]
        geometry = torch.stack(
            [found.to(clips.dtype), boxes[:, 0] / width, boxes[:, 1] / height, boxes[:, 2] / height,
             mask.flatten(1).mean(dim=1)],
            dim=1,
        )
        return torch.cat([geometry, *shifts], dim=1) * found[:, None].to(clips.dtype)

    def forward(self, pixels: Tensor) -> Tensor:
        clips = pixels.view(-1, self.frames_per_input, *pixels.shape[1:])  # (N, F, 3, H, W)
        middle = clips[:, self.frames_per_input // 2]
        magnitude = self.motion_magnitude(clips)
        mask = self.mask_from_magnitude(magnitude)
        feature_map = self.network.extract_features(torch.cat([middle, middle * mask]))  # (2N, 1280, h, w)
        appearance, moving = feature_map.mean(dim=(-2, -1)).chunk(2)
        return torch.cat([appearance, moving, self.motion_vector(clips, magnitude, mask)], dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shift_size={self.shift_size}, margin={self.margin}, min_side={self.min_side}"


@register_backbone(
    "efficientnet-lite0-motion-flow",
    dim=2 * 1280 + MotionFlowFeatures.motion_dim(4),
    mean=127.0,
    std=128.0,
    frames_per_input=4,
)
def efficientnet_lite0_motion_flow(device: str) -> nn.Module:
    """efficientnet-lite0-motion plus a coarse flow of the region that moves most (17 values): 2577-d."""
    return MotionFlowFeatures(efficientnet_lite0_network(device), frames_per_input=4)


