"""Lip-sync generator in VQGAN code space (DESIGN step 4).

Face encoder over ``concat(E_pose(target frame), E_face(reference frame))``, a U-Net-like
pyramid from the G x G code grid down to 1 x 1; speech encoder over the mel window centred
on the target frame; the two vectors (256 + 256 = 512 at paper size) are decoded back up
to G x G with skip connections from the face encoder (transposed conv + residual blocks,
batch norm, ReLU) to a predicted Face-VQGAN embedding. The caller quantizes it with the
Face-VQGAN's codebook before decoding it to pixels.

With ``audio_film`` the speech code also modulates each decoder level, ``h * (1 + g) + b``
with ``(g, b)`` a linear map of it per channel (FiLM, Perez et al. 2018). The maps start at
zero, so a new network begins as the plain one. With ``residual`` the output is the
reference embedding plus the network's output, whose last layer starts at zero.

With ``aperture_cue`` the network also predicts, from the speech code alone, how far the
mouth is open (:meth:`aperture`: the face mesh's lip aperture, standardised per segment),
and the code that conditions the decoder is the speech code plus an embedding of that
aperture. A caller that knows the true aperture (training) passes it; otherwise the
predicted one is used. With ``cue_only`` the decoder is conditioned on the aperture's
embedding alone, and the aperture is predicted by :class:`BandReadout`, a linear map of
the window's mel band energies (no speech encoder): the mouth then depends on the speech
only through how far it opens. With ``cue_dims`` 3 the cue is the mouth track's opening,
width and rounding (:mod:`dubber.mouth.params`), so the decoder can draw a rounded or a
spread mouth too, and when dubbing it is told the driver's track of the dub
(:mod:`dubber.mouth.driver`), not the read-out's guess.
"""

from __future__ import annotations

import torch
from torch import nn

from dubber.models.blocks import ConvBNReLU, ResBlock, SpeechEncoder, conv_stage
from dubber.models.dims import GeneratorDims


class _UpStage(nn.Module):
    """Transposed conv x2 + BN + ReLU + residual blocks."""

    def __init__(self, cin: int, cout: int, res_blocks: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.res = nn.Sequential(*[ResBlock(cout) for _ in range(res_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(torch.relu(self.bn(self.up(x))))


# Apertures are standardised per segment and clipped to +-APERTURE_CLIP (in training and
# when dubbing).
APERTURE_CLIP = 3.0


class BandReadout(nn.Module):
    """Mel window -> one scalar, linear in its band energies: the 80 log-mel bins averaged
    into ``bands`` bands and the window into ``blocks`` time blocks, plus the window's mean,
    standardised (batch norm without affine) and mapped by one linear layer.
    ``(B, n_mels, steps) -> (B,)``, or ``(B, outputs)`` when ``outputs`` > 1."""

    def __init__(self, n_mels: int, bands: int = 10, blocks: int = 4, outputs: int = 1):
        super().__init__()
        if n_mels % bands:
            raise ValueError(f"n_mels {n_mels} is not a multiple of {bands} bands")
        self.bands, self.blocks = bands, blocks
        self.norm = nn.BatchNorm1d(bands * blocks + 1, affine=False)
        self.out = nn.Linear(bands * blocks + 1, outputs)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        b, n, t = mel.shape
        x = mel.float().view(b, self.bands, n // self.bands, t).mean(2)
        x = nn.functional.adaptive_avg_pool1d(x, self.blocks).flatten(1)
        x = torch.cat([x, mel.float().mean(dim=(1, 2))[:, None]], dim=1)
        y = self.out(self.norm(x))
        return y.squeeze(1) if y.shape[1] == 1 else y


class LipSyncGenerator(nn.Module):
    """``(pose embedding, reference embedding, mel window) -> predicted face embedding``."""

    def __init__(self, dims: GeneratorDims):
        super().__init__()
        self.dims = dims
        fc, rb = dims.face_channels, dims.res_blocks
        levels = dims.grid.bit_length() - 1
        if 1 << levels != dims.grid or len(fc) != levels + 1:
            raise ValueError(
                f"grid must be a power of two and face_channels have log2(grid)+1 = "
                f"{levels + 1} entries, got grid {dims.grid}, {len(fc)} entries"
            )
        # Face encoder: level 0 at G x G, each next level halves the side; the last is 1 x 1.
        enc = [conv_stage(2 * dims.embed_dim, fc[0], 1, rb)]
        enc += [conv_stage(cin, cout, 2, rb) for cin, cout in zip(fc[:-1], fc[1:])]
        self.face_encoder = nn.ModuleList(enc)
        self.face_out = nn.Conv2d(fc[-1], dims.face_dim, 1)
        self.speech_encoder = None
        if not dims.cue_only:
            self.speech_encoder = SpeechEncoder(tuple(dims.audio_channels), dims.audio_dim, rb)
        # Decoder: bottleneck (face_dim + audio_dim) at 1 x 1, then up to G x G; each up stage
        # takes the previous output concatenated with the encoder's skip at that side.
        joint = dims.face_dim + dims.audio_dim
        self.bottleneck = ConvBNReLU(joint + fc[-1], fc[-1], kernel=1)
        ups = []
        for level in range(levels, 0, -1):  # from 1x1 up to G x G
            cin = fc[level] if level == levels else 2 * fc[level]
            ups.append(_UpStage(cin, fc[level - 1], rb))
        self.decoder = nn.ModuleList(ups)
        self.film = None
        if dims.audio_film:
            self.film = nn.ModuleList(
                nn.Linear(dims.audio_dim, 2 * fc[level - 1]) for level in range(levels, 0, -1)
            )
            for lin in self.film:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.aperture_head = self.aperture_embed = None
        if dims.cue_only and not dims.aperture_cue:
            raise ValueError("cue_only needs aperture_cue")
        if dims.cue_dims not in (1, 3) or (dims.cue_dims != 1 and not dims.aperture_cue):
            raise ValueError(f"cue_dims must be 1 or 3 (3 needs aperture_cue), "
                             f"got {dims.cue_dims}")
        if dims.aperture_cue:
            c = dims.cue_dims
            self.aperture_head = (
                BandReadout(dims.n_mels, outputs=c) if dims.cue_only
                else nn.Linear(dims.audio_dim, c)
            )
            self.aperture_embed = nn.Sequential(
                nn.Linear(c, 32), nn.ReLU(), nn.Linear(32, dims.audio_dim)
            )
        self.head = nn.Sequential(ConvBNReLU(2 * fc[0], fc[0]), nn.Conv2d(fc[0], dims.embed_dim, 1))
        if dims.residual:
            nn.init.zeros_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)

    def aperture(self, mel: torch.Tensor) -> torch.Tensor:
        """Predicted mouth cue per mel window, (B, n_mels, mel_steps) -> (B,) float
        (standardised lip aperture: 0 a typical opening of the speaker, + wider), or
        (B, 3) with ``cue_dims`` 3 (standardised opening, width, rounding)."""
        if self.aperture_head is None:
            raise ValueError("this generator has no aperture cue (dims.aperture_cue is off)")
        if self.dims.cue_only:
            return self.aperture_head(mel)
        return self._aperture(self.speech_encoder(mel))

    def _aperture(self, speech: torch.Tensor) -> torch.Tensor:
        y = self.aperture_head(torch.relu(speech))
        return y.squeeze(1) if y.shape[1] == 1 else y

    def _cue(self, cue: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The cue's embedding; ``cue`` (B,) or (B, cue_dims)."""
        cue = cue.to(dtype)
        return self.aperture_embed(cue[:, None] if cue.dim() == 1 else cue)

    def forward(
        self,
        pose: torch.Tensor,
        reference: torch.Tensor,
        mel: torch.Tensor,
        aperture: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the target frame's face embedding.

        Args:
            pose: shape = (B, embed_dim, G, G), float: Pose-VQGAN embedding of the target frame.
            reference: shape = (B, embed_dim, G, G), float: Face-VQGAN embedding of the
                reference frame (identity and texture).
            mel: shape = (B, n_mels, mel_steps), float log-mel window centred on the target
                frame's timestamp.
            aperture: shape = (B,), float: the mouth opening to draw, or (B, 3): the
                mouth's opening, width and rounding with ``cue_dims`` 3 (``aperture_cue``
                only; standardised); None: the cue predicted from ``mel``.

        Returns:
            shape = (B, embed_dim, G, G), float, not yet quantized.
        """
        d = self.dims
        want = (d.embed_dim, d.grid, d.grid)
        if pose.shape[1:] != want or reference.shape != pose.shape:
            raise ValueError(
                f"expected pose and reference (B, {want}), got {tuple(pose.shape)}, "
                f"{tuple(reference.shape)}"
            )
        if mel.shape != (pose.shape[0], d.n_mels, d.mel_steps):
            raise ValueError(f"expected mel (B, {d.n_mels}, {d.mel_steps}), got {tuple(mel.shape)}")
        h = torch.cat([pose, reference], dim=1)
        skips = []
        for stage in self.face_encoder:
            h = stage(h)
            skips.append(h)
        face = self.face_out(h)  # (B, face_dim, 1, 1)
        if d.cue_only:  # the speech reaches the decoder as the opening alone
            if aperture is None:
                aperture = self.aperture(mel)
            speech = self._cue(aperture, face.dtype)
        elif self.aperture_embed is not None:
            speech = self.speech_encoder(mel)  # (B, audio_dim)
            if aperture is None:
                aperture = self._aperture(speech)
            speech = speech + self._cue(aperture, speech.dtype)
        elif aperture is None:
            speech = self.speech_encoder(mel)
        else:
            raise ValueError("this generator has no aperture cue (dims.aperture_cue is off)")
        speech = speech[:, :, None, None]  # (B, audio_dim, 1, 1)
        h = self.bottleneck(torch.cat([face, speech, skips[-1]], dim=1))
        for i, up in enumerate(self.decoder):
            h = up(h if i == 0 else torch.cat([h, skips[-1 - i]], dim=1))
            if self.film is not None:
                g, b = self.film[i](speech.flatten(1))[:, :, None, None].chunk(2, dim=1)
                h = h * (1 + g) + b
        out = self.head(torch.cat([h, skips[0]], dim=1))
        return reference + out if d.residual else out
