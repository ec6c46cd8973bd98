"""TC-ResNet (Choi et al., "Temporal Convolution for Real-time Keyword Spotting on Mobile Devices", 2019)."""

from __future__ import annotations

from torch import Tensor, nn

from pipeline.errors import KWSError

# the paper's variants: residual blocks per stage (TC-ResNet8: one each, TC-ResNet14: two) and width multiplier k
SIZES = {"8": (1, 1.0), "14": (2, 1.0), "8-1.5": (1, 1.5), "14-1.5": (2, 1.5)}
STEM_CHANNELS = 16
STAGE_CHANNELS = (24, 32, 48)
STEM_KERNEL, KERNEL = 3, 9


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm1d(cout)]


class TCBlock(nn.Module):
    """Two temporal convolutions with a residual; a strided block projects its shortcut with a 1x1 convolution."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, KERNEL, stride), nn.ReLU(inplace=True), *_conv_bn(cout, cout, KERNEL)
        )
        self.shortcut = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride), nn.ReLU(inplace=True)) if stride != 1 or cin != cout
            else nn.Identity()
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.relu(self.body(x) + self.shortcut(x))


class TCResNet(nn.Module):
    """TC-ResNet: 1-D convolutions along time, with the feature rows of a frame as input channels.

    Args:
        n_classes: Output classes.
        n_features: Feature rows per frame (the paper uses 40 MFCCs).
        size: ``8``, ``14``, ``8-1.5`` or ``14-1.5`` (depth, then width multiplier), default ``8``.
        dropout: Dropout before the classifier.

    Example:
        >>> TCResNet(12, 40)(torch.randn(2, 40, 98)).shape  # doctest: +SKIP
        torch.Size([2, 12])
    """

    def __init__(self, n_classes: int, n_features: int = 40, size: str = "8", dropout: float = 0.2) -> None:
        super().__init__()
        if size not in SIZES:
            raise KWSError(f"model.size of tcresnet must be one of {', '.join(SIZES)}, not {size!r}")
        repeats, k = SIZES[size]
        channels = [int(c * k) for c in (STEM_CHANNELS, *STAGE_CHANNELS)]
        self.stem = nn.Conv1d(n_features, channels[0], STEM_KERNEL, padding=STEM_KERNEL // 2, bias=False)
        blocks = []
        for cin, cout in zip(channels, channels[1:]):
            blocks += [TCBlock(cin, cout, 2)] + [TCBlock(cout, cout, 1) for _ in range(repeats - 1)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels[-1], n_classes)
        )

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` -> ``(batch, n_classes)`` logits."""
        return self.head(self.blocks(self.stem(features)))
