"""Causal convolutions and the streaming form of a causal encoder (as Google's kws_streaming does it).

A causal encoder's output frame ``t`` depends on input frames up to ``t`` only: every convolution over time
is padded on the left (:class:`CausalConv1d`), everything else works frame by frame (pointwise convolutions,
batch norm in eval mode, activations, residual sums), and the head averages per-frame logits over the window
(:meth:`frame_logits`; averaging then classifying equals classifying then averaging, the head being linear).

:class:`StreamingForm` runs such an encoder on a stream: each causal convolution keeps the last ``context``
input frames it saw as state, so each new frame costs one frame's work. Run on a whole input in one call from
a zero state, it is the ordinary (non-streaming) run of the same weights; cut into chunks of any size with the
state carried over, it gives the same frame logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` padded on the left only: output frame ``t`` sees input frames ``t - context`` to ``t``.

    Args are ``nn.Conv1d``'s without ``padding`` (and with ``bias=False`` by default): the ``context =
    dilation * (kernel_size - 1)`` frames before the input are zeros, or the previous chunk's last frames when
    a :class:`StreamingForm` sets :attr:`cache`.

    Example:
        >>> conv = CausalConv1d(8, 8, 5, groups=8)
        >>> conv(torch.randn(1, 8, 20)).shape
        torch.Size([1, 8, 20])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1,
                 bias: bool = False) -> None:  # fmt: skip
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups, bias=bias)
        self.context = dilation * (kernel_size - 1)
        self.cache: Tensor | None = None  # (batch, in_channels, context) past input frames while streaming

    def forward(self, x: Tensor) -> Tensor:
        if self.cache is None:
            past = x.new_zeros(x.shape[0], x.shape[1], self.context)
        else:
            past = self.cache
        x = torch.cat([past, x], dim=2)
        if self.cache is not None:
            self.cache = x[:, :, x.shape[2] - self.context :]
        return self._conv_forward(x, self.weight, self.bias)


class StreamingForm(nn.Module):
    """A causal encoder as a step function: ``(frames, state) -> (frame logits, next state)``.

    The state is one ``(batch, state_size)`` tensor: every causal convolution's past input frames, flattened
    in module order (a single tensor keeps the exported ONNX graph's interface fixed).

    Args:
        encoder: A model built with ``causal=True`` (e.g. ``MatchboxNet(..., causal=True)``): its convolutions
            over time are :class:`CausalConv1d` and its ``frame_logits(features)`` gives ``(batch, frames,
            n_classes)`` logits whose mean over the frames is its ``forward``.

    Example:
        >>> step = StreamingForm(MatchboxNet(12, 64, causal=True).eval())  # doctest: +SKIP
        >>> state = step.initial_state()  # doctest: +SKIP
        >>> logits, state = step(torch.randn(1, 64, 7), state)  # doctest: +SKIP
    """

    step_frames, lead_outputs, window_outputs = 1, 0, None  # one output per frame; a window averages its frames'

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.convs = [m for m in encoder.modules() if isinstance(m, CausalConv1d) and m.context]
        self.shapes = [(conv.in_channels, conv.context) for conv in self.convs]
        self.state_size = sum(c * k for c, k in self.shapes)

    def initial_state(self, batch: int = 1) -> Tensor:
        """The state before the first frame: zeros, as the non-streaming run pads."""
        return torch.zeros(batch, self.state_size)

    def forward(self, frames: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """``(batch, n_features, T)`` new frames and the state -> ``(batch, T, n_classes)`` and the next state."""
        parts = torch.split(state, [c * k for c, k in self.shapes], dim=1)
        for conv, part, (channels, context) in zip(self.convs, parts, self.shapes):
            conv.cache = part.reshape(-1, channels, context)
        try:
            logits = self.encoder.frame_logits(frames)
            following = torch.cat([conv.cache.flatten(1) for conv in self.convs], dim=1)
        finally:
            for conv in self.convs:
                conv.cache = None
        return logits, following
