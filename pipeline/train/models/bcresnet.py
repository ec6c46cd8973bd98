"""BC-ResNet (Kim et al., "Broadcasted Residual Learning for Efficient Keyword Spotting", Interspeech 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.errors import KWSError

WIDTHS = (1, 1.5, 2, 3, 6, 8)  # the paper's BC-ResNet-tau family
BASE_CHANNELS = 8
BLOCKS = (2, 2, 4, 4)  # blocks per stage
STRIDED_STAGES = (1, 2)  # stages that halve the frequency axis
SUB_BANDS = 5  # SubSpectralNorm groups


class SubSpectralNorm(nn.Module):
    """Batch norm with separate statistics for each of ``sub_bands`` frequency groups."""

    def __init__(self, channels: int, sub_bands: int = SUB_BANDS) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: Tensor) -> Tensor:
        n, c, f, t = x.shape
        if self.training:
            return self.bn(x.reshape(n, c * self.sub_bands, f // self.sub_bands, t)).reshape(n, c, f, t)
        # inference: the same normalisation as one affine map per (channel, frequency row), which an exporter
        # folds into constants (no reshapes around a batch norm)
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        shift = self.bn.bias - self.bn.running_mean * scale
        rows = f // self.sub_bands
        scale = scale.reshape(c, self.sub_bands).repeat_interleave(rows, dim=1).reshape(1, c, f, 1)
        shift = shift.reshape(c, self.sub_bands).repeat_interleave(rows, dim=1).reshape(1, c, f, 1)
        return x * scale + shift


def _conv_norm(
    cin: int,
    cout: int,
    kernel: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    groups: int = 1,
    dilation: tuple[int, int] = (1, 1),
    norm: nn.Module | None = None,
    act: nn.Module | None = None,
) -> nn.Sequential:
    padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=False), norm or nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act] if act is not None else []))


class BCResBlock(nn.Module):
    """Frequency-depthwise 2D part, broadcast over frequency into a temporal 1D part, with residuals."""

    def __init__(self, cin: int, cout: int, stage: int, stride: int) -> None:
        super().__init__()
        self.transition = cin != cout
        f2 = [_conv_norm(cin, cout, (1, 1), act=nn.ReLU(inplace=True))] if self.transition else []
        f2.append(_conv_norm(cout, cout, (3, 1), (stride, 1), groups=cout, norm=SubSpectralNorm(cout)))
        self.f2 = nn.Sequential(*f2)
        self.f1 = nn.Sequential(
            _conv_norm(cout, cout, (1, 3), groups=cout, dilation=(1, 2**stage), act=nn.SiLU(inplace=True)),
            nn.Conv2d(cout, cout, 1, bias=False),
            nn.Dropout2d(0.1),
        )

    def forward(self, x: Tensor) -> Tensor:
        aux = self.f2(x)
        y = self.f1(aux.mean(dim=2, keepdim=True)) + aux
        if not self.transition:
            y = y + x
        return nn.functional.relu(y)


class BCResNet(nn.Module):
    """BC-ResNet-tau on log-mel (or MFCC) frames.

    Args:
        n_classes: Output classes.
        n_features: Feature rows per frame; a multiple of 40 (three halvings, then 5 sub-bands).
        width: tau in the paper: 1, 1.5, 2, 3, 6 or 8 (8 x tau base channels).

    Example:
        >>> BCResNet(12, 40, width=1)(torch.randn(2, 40, 98)).shape  # doctest: +SKIP
        torch.Size([2, 12])
    """

    def __init__(self, n_classes: int, n_features: int = 40, width: float = 1) -> None:
        super().__init__()
        if width not in WIDTHS:
            raise KWSError(f"model.width must be one of {', '.join(map(str, WIDTHS))}, not {width}")
        if n_features % 40:
            raise KWSError(f"BC-ResNet needs a multiple of 40 feature rows per frame, not {n_features}")
        b = int(BASE_CHANNELS * width)
        c = [2 * b, b, int(1.5 * b), 2 * b, int(2.5 * b), 4 * b]
        self.head = _conv_norm(1, c[0], (5, 5), (2, 1), act=nn.ReLU(inplace=True))
        blocks = []
        for stage, n in enumerate(BLOCKS):
            for i in range(n):
                stride = 2 if stage in STRIDED_STAGES and i == 0 else 1
                blocks.append(BCResBlock(c[stage] if i == 0 else c[stage + 1], c[stage + 1], stage, stride))
        self.blocks = nn.Sequential(*blocks)
        f_out = n_features // 8
        self.classifier = nn.Sequential(
            nn.Conv2d(c[-2], c[-2], (f_out, 5), padding=(0, 2), groups=c[-2], bias=False),
            nn.Conv2d(c[-2], c[-1], 1, bias=False),
            nn.BatchNorm2d(c[-1]),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c[-1], n_classes, 1),
            nn.Flatten(),
        )

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` -> ``(batch, n_classes)`` logits."""
        return self.classifier(self.blocks(self.head(features.unsqueeze(1))))
