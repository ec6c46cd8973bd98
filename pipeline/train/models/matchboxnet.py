"""MatchboxNet (Majumdar and Ginsburg, "MatchboxNet: 1D Time-Channel Separable Convolutional Neural Network
Architecture for Speech Commands Recognition", Interspeech 2020), as in NeMo's ``matchboxnet_3x1x64`` recipes."""

from __future__ import annotations

import re

from torch import Tensor, nn

from pipeline.errors import KWSError
from pipeline.train.models.causal import CausalConv1d

SIZE_PATTERN = re.compile(r"(\d+)x(\d+)x(\d+)")  # blocks x sub-blocks x channels, e.g. 3x1x64
PROLOGUE_CHANNELS, PROLOGUE_KERNEL = 128, 11
FIRST_KERNEL, KERNEL_STEP = 13, 2  # block b uses kernel 13 + 2b
EPILOGUE_CHANNELS, EPILOGUE_KERNEL, EPILOGUE_DILATION = 128, 29, 2


def _separable(cin: int, cout: int, kernel: int, dilation: int = 1, causal: bool = False) -> list[nn.Module]:
    """Time-channel separable convolution: depthwise over time (centred, or causal), then pointwise over channels,
    then batch norm."""
    if causal:
        depthwise: nn.Module = CausalConv1d(cin, cin, kernel, dilation=dilation, groups=cin)
    else:
        depthwise = nn.Conv1d(cin, cin, kernel, padding=dilation * (kernel // 2), dilation=dilation, groups=cin,
                              bias=False)  # fmt: skip
    return [depthwise, nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout)]


class MatchboxBlock(nn.Module):
    """``repeats`` separable sub-blocks with one 1x1-projected residual added before the last activation."""

    def __init__(self, cin: int, cout: int, kernel: int, repeats: int, dropout: float, causal: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for r in range(repeats):
            layers += _separable(cin if r == 0 else cout, cout, kernel, causal=causal)
            if r < repeats - 1:
                layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.residual = nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))
        self.out = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.residual(x))


class MatchboxNet(nn.Module):
    """MatchboxNet-BxRxC: B residual blocks of R time-channel separable sub-blocks with C channels.

    Args:
        n_classes: Output classes.
        n_features: Feature rows per frame (the paper uses 64 MFCCs).
        size: ``BxRxC``, default ``3x1x64``; the paper's variants are ``3x1x64``, ``3x2x64`` and ``6x2x64``.
        dropout: Dropout after each sub-block.
        causal: Convolutions over time see only the past (padded on the left), so that the model runs frame by
            frame on a stream (:class:`~pipeline.train.models.causal.StreamingForm`); the paper's are centred
            (0.54 s of look-ahead at ``3x1x64``).

    Example:
        >>> MatchboxNet(12, 64)(torch.randn(2, 64, 98)).shape  # doctest: +SKIP
        torch.Size([2, 12])
    """

    def __init__(self, n_classes: int, n_features: int = 64, size: str = "3x1x64", dropout: float = 0.0,
                 causal: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.causal = causal
        match = SIZE_PATTERN.fullmatch(size)
        if not match or not all(int(v) > 0 for v in match.groups()):
            raise KWSError(f"model.size of matchboxnet must read BxRxC (blocks x sub-blocks x channels), not {size!r}")
        blocks, repeats, channels = map(int, match.groups())
        act = [nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.prologue = nn.Sequential(*_separable(n_features, PROLOGUE_CHANNELS, PROLOGUE_KERNEL, causal=causal), *act)
        self.blocks = nn.Sequential(*[
            MatchboxBlock(PROLOGUE_CHANNELS if b == 0 else channels, channels, FIRST_KERNEL + KERNEL_STEP * b, repeats,
                          dropout, causal)
            for b in range(blocks)
        ])  # fmt: skip
        self.epilogue = nn.Sequential(
            *_separable(channels, EPILOGUE_CHANNELS, EPILOGUE_KERNEL, EPILOGUE_DILATION, causal), *act,
            nn.Conv1d(EPILOGUE_CHANNELS, EPILOGUE_CHANNELS, 1, bias=False), nn.BatchNorm1d(EPILOGUE_CHANNELS), *act,
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(EPILOGUE_CHANNELS, n_classes))

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` -> ``(batch, n_classes)`` logits."""
        return self.head(self.trunk(features))

    def trunk(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` -> ``(batch, EPILOGUE_CHANNELS, frames)``: everything before the pooling."""
        return self.epilogue(self.blocks(self.prologue(features)))

    def frame_logits(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` -> ``(batch, frames, n_classes)``: the classifier applied to every frame
        (their mean over the frames is :meth:`forward`'s logits)."""
        return self.head[-1](self.trunk(features).transpose(1, 2))
