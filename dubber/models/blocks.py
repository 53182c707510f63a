"""Convolution blocks shared by the sync expert and the generator (conv + BN + ReLU)."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Module):
    """Conv2d -> BatchNorm2d -> ReLU; ``(B, cin, H, W) -> (B, cout, H', W')``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int | tuple[int, int] = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    """Two 3x3 conv + BN with an identity shortcut, ReLU after the sum; shape-preserving."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = ConvBNReLU(ch, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(self.conv1(x))))


def conv_stage(cin: int, cout: int, stride: int | tuple[int, int], res_blocks: int) -> nn.Sequential:
    """A strided :class:`ConvBNReLU` followed by ``res_blocks`` :class:`ResBlock` s."""
    return nn.Sequential(ConvBNReLU(cin, cout, 3, stride), *[ResBlock(cout) for _ in range(res_blocks)])


class SpeechEncoder(nn.Module):
    """Mel window -> one vector. ``(B, n_mels, steps) -> (B, out_dim)``.

    Strides shrink the mel axis by 3 (80 -> 27 -> 9 -> 3 -> 1) and the time axis by 2 per
    level while it is longer than 2; what is left is averaged, so any window length works.
    """

    def __init__(self, channels: tuple[int, ...], out_dim: int, res_blocks: int = 1):
        super().__init__()
        layers: list[nn.Module] = [conv_stage(1, channels[0], 1, res_blocks)]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers.append(conv_stage(cin, cout, (3, 2), res_blocks))
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels[-1], out_dim, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.body(mel.unsqueeze(1))
        return self.out(h.mean(dim=(2, 3), keepdim=True)).flatten(1)
