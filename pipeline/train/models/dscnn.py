"""DS-CNN keyword-spotting model (Zhang et al., "Hello Edge: Keyword Spotting on Microcontrollers", 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from pipeline.errors import KWSError

SIZES = {"s": (64, 4), "m": (172, 4), "l": (276, 5)}  # channels, depthwise-separable blocks


def _separable(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class DSCNN(nn.Module):
    """Depthwise-separable CNN over the (time, feature) plane.

    Args:
        n_classes: Output classes.
        n_features: Feature rows per frame (unused by the layers; kept for a uniform signature).
        size: ``s``, ``m`` or ``l`` as in the paper (64/172/276 channels, 4/4/5 blocks).
        dropout: Dropout before the classifier.

    Example:
        >>> DSCNN(12, 40)(torch.randn(2, 40, 98)).shape  # doctest: +SKIP
        torch.Size([2, 12])
    """

    def __init__(self, n_classes: int, n_features: int = 40, size: str = "s", dropout: float = 0.2) -> None:
        super().__init__()
        if size not in SIZES:
            raise KWSError(f"model.size must be one of {', '.join(SIZES)}, not {size!r}")
        channels, blocks = SIZES[size]
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, (10, 4), stride=(2, 2), padding=(5, 1), bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[_separable(channels) for _ in range(blocks)])
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, n_classes)
        )

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` -> ``(batch, n_classes)`` logits."""
        x = features.transpose(1, 2).unsqueeze(1)  # (batch, 1, time, feature) as in the paper
        return self.head(self.blocks(self.stem(x)))
