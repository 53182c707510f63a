"""GPEN: GAN-prior embedded network for blind face restoration (Yang et al., CVPR 2021).

A plain-PyTorch rewrite of the architecture: a convolutional encoder takes the degraded
face down to 4 x 4 and a latent code; a StyleGAN2 generator (the GAN prior) renders the
restored face from that code, with the encoder's feature map at each side concatenated in
where StyleGAN2 adds noise. StyleGAN2's CUDA kernels (fused bias-act, upfirdn2d) are
replaced by their reference formulas, so the module runs on any device. Parameter names
follow the authors' ``FullGenerator``; sizes 256 (narrow 0.5, multiplier 1) and 512
(narrow 1, multiplier 2) are the paper's GPEN-BFR models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dubber.models.dims import GPENDims

BLUR_KERNEL = (1, 3, 3, 1)
LRELU_GAIN = math.sqrt(2.0)


def _make_kernel(k: tuple[int, ...]) -> torch.Tensor:
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter (depthwise) and downsample.

    Args:
        x: shape = (B, C, H, W).
        kernel: shape = (kh, kw), the FIR filter.
        up, down: integer factors; pad: (before, after) zero padding on both axes, >= 0.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).to(x)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        kernel = _make_kernel(BLUR_KERNEL) * upsample_factor**2
        self.register_buffer("kernel", kernel, persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", _make_kernel(BLUR_KERNEL) * factor**2, persistent=False)
        self.factor = factor
        p = len(BLUR_KERNEL) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU (0.2), gain sqrt(2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return F.leaky_relu(x + self.bias.view(shape).to(x), 0.2) * LRELU_GAIN


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (weights scaled at run time)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.scale = 1 / math.sqrt(cin * kernel**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x)
        return F.conv2d(x, (self.weight * self.scale).to(x), bias, self.stride, self.padding)


class EqualLinear(nn.Module):
    """Linear with equalised learning rate; optional fused leaky ReLU."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale = 1 / math.sqrt(cin) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, (self.weight * self.scale).to(x))
        out = out + (self.bias * self.lr_mul).to(x)
        return F.leaky_relu(out, 0.2) * LRELU_GAIN if self.activation else out


class ConvLayer(nn.Sequential):
    """(Blur + stride-2) EqualConv2d + fused leaky ReLU, as in StyleGAN2's discriminator."""

    def __init__(self, cin: int, cout: int, kernel: int, downsample: bool = False):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (kernel - 1)
            layers.append(Blur(((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel // 2
        layers.append(EqualConv2d(cin, cout, kernel, stride, padding, bias=False))
        layers.append(FusedLeakyReLU(cout))
        super().__init__(*layers)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated (and demodulated) convolution, optionally upsampling by 2."""

    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.cin, self.cout, self.kernel = cin, cout, kernel
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            p = (len(BLUR_KERNEL) - 2) - (kernel - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1 / math.sqrt(cin * kernel**2)
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        style = self.modulation(style).view(b, 1, cin, 1, 1)
        weight = self.scale * self.weight.to(x) * style
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(b, self.cout, 1, 1, 1)
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * cin, self.cout, self.kernel, self.kernel)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = self.blur(out.view(b, self.cout, *out.shape[2:]))
        else:
            weight = weight.view(b * self.cout, cin, self.kernel, self.kernel)
            out = F.conv2d(x, weight, padding=self.kernel // 2, groups=b)
            out = out.view(b, self.cout, *out.shape[2:])
        return out


class NoiseInjection(nn.Module):
    """GPEN's twist on StyleGAN2 noise: the encoder feature is concatenated, scaled."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.weight.to(x) * feature], dim=1)


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, kernel, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout * 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), feature))


class ToRGB(nn.Module):
    def __init__(self, cin: int, style_dim: int, upsample: bool = True):
        super().__init__()
        self.upsample = Upsample() if upsample else None
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def gpen_channels(dims: GPENDims) -> dict[int, int]:
    """Feature channels per side, as in the authors' code."""
    n, cm = dims.narrow, dims.channel_multiplier
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
            512: 32 * cm, 1024: 16 * cm}
    return {k: int(v * n) for k, v in base.items()}


class StyleGANPrior(nn.Module):
    """StyleGAN2 generator whose noise inputs are GPEN encoder features."""

    def __init__(self, dims: GPENDims):
        super().__init__()
        ch = gpen_channels(dims)
        self.log_size = int(math.log2(dims.size))
        self.style = nn.Sequential(
            *[EqualLinear(dims.style_dim, dims.style_dim, lr_mul=0.01, activation=True)
              for _ in range(dims.n_mlp)]
        )
        self.input = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv1 = StyledConv(ch[4], ch[4], 3, dims.style_dim)
        self.to_rgb1 = ToRGB(ch[4] * 2, dims.style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        cin = ch[4]
        for i in range(3, self.log_size + 1):
            cout = ch[2**i]
            self.convs.append(StyledConv(cin * 2, cout, 3, dims.style_dim, upsample=True))
            self.convs.append(StyledConv(cout * 2, cout, 3, dims.style_dim))
            self.to_rgbs.append(ToRGB(cout * 2, dims.style_dim))
            cin = cout

    def forward(self, code: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """``code`` (B, style_dim) and features from 4x4 up -> image (B, 3, size, size)."""
        # PixelNorm, then the mapping network; one latent for every layer.
        w = self.style(code * torch.rsqrt(code.pow(2).mean(1, keepdim=True) + 1e-8))
        out = self.conv1(self.input.to(w).expand(w.shape[0], -1, -1, -1), w, features[0])
        skip = self.to_rgb1(out, w)
        for j, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * j](out, w, features[1 + 2 * j])
            out = self.convs[2 * j + 1](out, w, features[2 + 2 * j])
            skip = to_rgb(out, w, skip)
        return skip


class GPEN(nn.Module):
    """Degraded face (B, 3, size, size) in [-1, 1] -> restored face, same shape and range."""

    def __init__(self, dims: GPENDims):
        super().__init__()
        ch = gpen_channels(dims)
        if dims.size not in ch or dims.size < 8:
            raise ValueError(f"GPEN size must be a power of two from 8 to 1024, got {dims.size}")
        self.dims = dims
        log_size = int(math.log2(dims.size))
        enc: list[nn.Module] = [ConvLayer(3, ch[dims.size], 1)]
        cin = ch[dims.size]
        for i in range(log_size, 2, -1):
            cout = ch[2 ** (i - 1)]
            enc.append(ConvLayer(cin, cout, 3, downsample=True))
            cin = cout
        self.encoder = nn.ModuleList(enc)
        self.final_linear = EqualLinear(ch[4] * 4 * 4, dims.style_dim, activation=True)
        self.generator = StyleGANPrior(dims)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Restore faces.

        Args:
            images: shape = (B, 3, size, size), float RGB in [-1, 1].

        Returns:
            shape = (B, 3, size, size), clamped to [-1, 1].
        """
        s = self.dims.size
        if images.shape[1:] != (3, s, s):
            raise ValueError(f"expected images (B, 3, {s}, {s}), got {tuple(images.shape)}")
        feats = []
        h = images
        for layer in self.encoder:
            h = layer(h)
            feats.append(h)
        code = self.final_linear(h.flatten(1))
        # Each side's feature feeds both convs at that side; the 4x4 one feeds conv1 once.
        pairs = [f for f in reversed(feats) for _ in range(2)]
        return self.generator(code, pairs[1:]).clamp(-1.0, 1.0)
