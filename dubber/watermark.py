"""The invisible watermark: DWT-DCT-SVD embedding and decoding, shared by render and verify.

**The scheme** is invisible-watermark's ``dwtDctSvd``: a plane's one-level Haar DWT, its
approximation band (LL) cut into 4x4 blocks, and in each block the largest singular value
of the block's DCT quantised to carry one bit (quantisation index modulation):
``s0 mod scale`` near ``scale / 4`` is a 0, near ``3 scale / 4`` a 1. The DCT is orthogonal,
so a block and its DCT have the same singular values, and changing ``s0`` in the DCT domain
is the rank-one change ``d u v^T`` of the block itself (``u``, ``v`` its top singular
vectors): we never compute a DCT. Our implementation is vectorised over every block of
every image of a batch (the top singular triplet by a few power iterations on the 4x4 Gram
matrices, with an exact SVD for the rare blocks where they have not converged), and moves ``s0`` to the NEAREST point that carries the bit instead of the one above
``floor(s0 / scale)`` (same decoding, half the change). :func:`encode_bgr` /
:func:`decode_bgr` work on a crop as invisible-watermark's ``WatermarkEncoder`` /
``WatermarkDecoder`` with ``method="dwtDctSvd"`` do, and each decodes the other's marks.

**In a film** (:func:`embed_faces`, :func:`decode_face`) the mark lives in a canonical,
face-aligned frame: the square of side ``FACE_SCALE * sqrt(w h)`` centred on the face box,
resampled to ``GRID`` x ``GRID`` luma pixels (8-bit units) and weighted by a disc that fades
to 0 at the square's inscribed circle, so no pixel outside it changes. The codeword
(:func:`codeword`: 32 payload bits, 32 check bits, whitened) is spread over the disc's
blocks in a fixed pseudo-random order, each bit two or three times; the change is blurred
so that no block edge shows, and a few passes correct what the blur and the resampling
leave off target. Verification re-detects the face, which gives a slightly different box,
so :func:`decode_face` searches every shift and scale near it (:data:`N_CANDIDATES`) and
keeps the alignment that agrees best with the payload; that number and the bit-error
threshold set the false-match rate (:func:`false_match_rate`).

Changing any constant of the canonical frame changes the format: marks made before no
longer verify.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

BLOCK = 4  # LL block side (invisible-watermark's ``block``)
PIX = 2 * BLOCK  # pixels per block side in the image (the LL band is half size)
GRID = 128  # side of the canonical face square, pixels
FACE_SCALE = 1.0  # side of the face square / sqrt(box width * box height)
DISC_FULL = 0.72  # the weight is 1 inside this radius (fraction of the half side) ...
DISC_ZERO = 0.98  # ... and fades (raised cosine) to 0 at this one
PAYLOAD_BITS = 32
CHECK_BITS = 32
N_BITS = PAYLOAD_BITS + CHECK_BITS
_SEED = 0x5EED_D0BB  # whitening and block order: part of the format
_POWER_STEPS = 6

# The alignment search of decode_face: every shift of the square's centre by up to
# SEARCH_MARGIN canonical pixels (in steps of one), at each of SEARCH_SCALES.
SEARCH_MARGIN = 8
SEARCH_SCALES = tuple(round(1 + 0.01 * k, 2) for k in range(-8, 9))
N_CANDIDATES = (2 * SEARCH_MARGIN + 1) ** 2 * len(SEARCH_SCALES)


# --------------------------------------------------------------------------- the scheme


def haar_ll(planes: np.ndarray) -> np.ndarray:
    """The approximation band of a one-level Haar DWT (``pywt.dwt2(x, "haar")[0]``).

    Args:
        planes: shape = (..., H, W), H and W even, float.

    Returns:
        shape = (..., H/2, W/2), float32: the sum of each 2x2 cell over 2.
    """
    p = planes.astype(np.float32, copy=False)
    return (p[..., 0::2, 0::2] + p[..., 0::2, 1::2] + p[..., 1::2, 0::2]
            + p[..., 1::2, 1::2]) * 0.5


def _blocks(ll: np.ndarray) -> np.ndarray:
    """LL (..., h, w) -> its 4x4 blocks as (4, 4, ..., h/4, w/4): element [k, i] of each
    block first (row k, column i), so the per-block algebra runs on long vectors."""
    *lead, h, w = ll.shape
    nby, nbx = h // BLOCK, w // BLOCK
    b = ll[..., : nby * BLOCK, : nbx * BLOCK].reshape(*lead, nby, BLOCK, nbx, BLOCK)
    nd = b.ndim
    return np.ascontiguousarray(np.moveaxis(b, (nd - 3, nd - 1), (0, 1)))


def top_singular(blocks: np.ndarray, vectors: bool = True):
    """Largest singular value (and its vectors) of every 4x4 block.

    Args:
        blocks: shape = (4, 4, ...), float: ``blocks[k, i, ...]`` is row k, column i of
            each block (the layout of :func:`_blocks`).
        vectors: also return the singular vectors.

    Returns:
        s0 of shape (...,) float32; with ``vectors``, also u and v of shape (4, ...), so that
        ``s0 u v^T`` is each block's best rank-one part.
    """
    shape = blocks.shape[2:]
    b = blocks.reshape(BLOCK, BLOCK, -1).astype(np.float32, copy=False)
    gram = np.einsum("kim,kjm->ijm", b, b)
    v = np.full((BLOCK, b.shape[-1]), 0.5, np.float32)
    for _ in range(_POWER_STEPS):
        v = np.einsum("ijm,jm->im", gram, v)
        v /= np.maximum(np.sqrt(np.einsum("im,im->m", v, v)), 1e-20)
    gv = np.einsum("ijm,jm->im", gram, v)
    lam = np.einsum("im,im->m", gv, v)
    # Not converged where G v is not yet parallel to v: a tiny share of a picture's blocks
    # (s0 carries the block's mean, far above s1); an exact SVD settles them.
    resid = np.sqrt(np.maximum(np.einsum("im,im->m", gv, gv) - lam * lam, 0.0))
    bad = np.nonzero(resid > 2e-3 * np.maximum(lam, 1e-6) + 1e-6)[0]
    u = np.einsum("kim,im->km", b, v)
    s0 = np.sqrt(np.einsum("km,km->m", u, u))
    u /= np.maximum(s0, 1e-20)
    if len(bad):
        U, S, Vt = np.linalg.svd(np.moveaxis(b[:, :, bad], -1, 0).astype(np.float64))
        s0[bad], u[:, bad], v[:, bad] = S[:, 0], U[:, :, 0].T, Vt[:, 0, :].T
    if not vectors:
        return s0.reshape(shape)
    return s0.reshape(shape), u.reshape(BLOCK, *shape), v.reshape(BLOCK, *shape)


def qim_target(s0: np.ndarray, bits: np.ndarray, scale: float) -> np.ndarray:
    """The value nearest ``s0`` whose ``mod scale`` is ``scale/4`` (bit 0) or ``3 scale/4``
    (bit 1); never negative."""
    offset = (0.25 + 0.5 * bits.astype(np.float32)) * scale
    t = np.round((s0 - offset) / scale) * scale + offset
    return np.where(t < 0, t + scale, t).astype(np.float32)


def block_fractions(planes: np.ndarray, scale: float) -> np.ndarray:
    """Where ``s0`` of each block lies in its quantisation cell.

    Args:
        planes: shape = (..., H, W) float, in the units ``scale`` is given in.
        scale: the quantisation step of ``s0``.

    Returns:
        shape = (..., H // 8, W // 8), float32 in [0, 1): ``(s0 mod scale) / scale``; above
        0.5 reads as a 1 (invisible-watermark's rule).
    """
    h, w = planes.shape[-2:]
    ll = haar_ll(planes[..., : h // PIX * PIX, : w // PIX * PIX])
    s0 = top_singular(_blocks(ll), vectors=False)
    return np.mod(s0, scale) / scale


def soft_bits(fractions: np.ndarray) -> np.ndarray:
    """A block fraction as a soft bit in [-1, 1]: +1 at 3/4 (a clean 1), -1 at 1/4."""
    return -np.sin(2 * np.pi * fractions)


def embed_planes(planes: np.ndarray, bit_map: np.ndarray, scale: float,
                 weight: np.ndarray | None = None) -> np.ndarray:
    """The change that writes ``bit_map`` into ``planes``, one bit per 8x8-pixel block.

    Args:
        planes: shape = (N, H, W) float (any H, W; blocks cover the top-left
            ``H // 8 * 8`` x ``W // 8 * 8``).
        bit_map: shape = (N or 1, H // 8, W // 8), 0/1: the bit of each block.
        scale: the quantisation step of ``s0``.
        weight: shape = (H, W) or (N, H, W) float in [0, 1], or None: the change is
            multiplied by it (0 leaves a pixel alone).

    Returns:
        shape = (N, H, W), float32: add it to ``planes``.
    """
    n, h, w = planes.shape
    hb, wb = h // PIX * PIX, w // PIX * PIX
    ll = haar_ll(planes[:, :hb, :wb])
    blocks = _blocks(ll)
    s0, u, v = top_singular(blocks)  # (N, nby, nbx), (4, N, nby, nbx) twice
    d = qim_target(s0, np.broadcast_to(bit_map, s0.shape), scale) - s0
    # The change of each LL block, d u v^T, laid out as LL: (N, nby, 4, nbx, 4).
    dll = (d[:, :, None, :, None] * np.moveaxis(u, 0, 2)[..., None]
           * np.moveaxis(v, 0, -1)[:, :, None, :, :])
    dll = dll.reshape(n, hb // 2, wb // 2)
    # The inverse Haar DWT of a change in LL alone: half of it on each pixel of the cell.
    delta = np.zeros((n, h, w), np.float32)
    delta[:, :hb, :wb] = np.repeat(np.repeat(dll * 0.5, 2, axis=1), 2, axis=2)
    if weight is not None:
        delta *= weight
    return delta


# --------------------------------------------------- invisible-watermark compatibility


def raster_bit_map(bits: Sequence[int], nby: int, nbx: int) -> np.ndarray:
    """invisible-watermark's layout: block number ``i * nbx + j`` carries bit
    ``(i * nbx + j) % len(bits)``. Returns shape = (nby, nbx) uint8."""
    bits = np.asarray(bits, np.uint8)
    return bits[np.arange(nby * nbx) % len(bits)].reshape(nby, nbx)


_DEFAULT_SCALES = (0.0, 36.0, 0.0)  # invisible-watermark's: U of cv2's YUV only


def encode_bgr(images: np.ndarray, bits: Sequence[int],
               scales: Sequence[float] = _DEFAULT_SCALES) -> np.ndarray:
    """Mark BGR crops as invisible-watermark's ``dwtDctSvd`` encoder does.

    Args:
        images: shape = (H, W, 3) or (N, H, W, 3), uint8 BGR (OpenCV's order).
        bits: the watermark, 0/1 values.
        scales: step per channel of OpenCV's YUV (invisible-watermark's ``scales``; only
            Y and U are used, as there).

    Returns:
        The marked images, same shape, uint8.
    """
    single = images.ndim == 3
    batch = images[None] if single else images
    yuv = np.stack([cv2.cvtColor(im, cv2.COLOR_BGR2YUV) for im in batch])
    h, w = yuv.shape[1:3]
    for ch in range(2):
        if scales[ch] <= 0:
            continue
        plane = yuv[..., ch].astype(np.float32)
        bit_map = raster_bit_map(bits, h // PIX, w // PIX)[None]
        plane += embed_planes(plane, bit_map, float(scales[ch]))
        yuv[..., ch] = np.clip(plane + 0.5, 0, 255)  # round half up, as uint8 truncates
    out = np.stack([cv2.cvtColor(im, cv2.COLOR_YUV2BGR) for im in yuv])
    return out[0] if single else out


def decode_bgr(images: np.ndarray, n_bits: int,
               scales: Sequence[float] = _DEFAULT_SCALES) -> np.ndarray:
    """Read a mark as invisible-watermark's ``dwtDctSvd`` decoder does (majority of the
    hard block bits of each watermark bit).

    Args:
        images: shape = (H, W, 3) or (N, H, W, 3), uint8 BGR.
        n_bits: length of the watermark.
        scales: as in :func:`encode_bgr`.

    Returns:
        shape = (n_bits,) or (N, n_bits), bool.
    """
    single = images.ndim == 3
    batch = images[None] if single else images
    yuv = np.stack([cv2.cvtColor(im, cv2.COLOR_BGR2YUV) for im in batch])
    h, w = yuv.shape[1:3]
    votes = np.zeros((len(batch), n_bits))
    counts = np.zeros(n_bits)
    for ch in range(2):
        if scales[ch] <= 0:
            continue
        frac = block_fractions(yuv[:, : h // PIX * PIX, : w // PIX * PIX, ch], float(scales[ch]))
        which = np.arange(frac.shape[1] * frac.shape[2]) % n_bits
        hard = (frac > 0.5).reshape(len(batch), -1).astype(np.float64)
        np.add.at(votes.T, which, hard.T)
        counts += np.bincount(which, minlength=n_bits)
    bits = votes / np.maximum(counts, 1) * 255 > 127
    return bits[0] if single else bits


# ------------------------------------------------------------------------ the codeword


def parse_payload(payload: str | int) -> int:
    """A payload as an int: 32 bits, given as an int or 8 hex digits (``"d0bb1e55"``).

    Raises:
        ValueError: not 32 bits of hex.
    """
    if isinstance(payload, int):
        value = payload
    else:
        text = str(payload).strip().lower().removeprefix("0x")
        if len(text) != PAYLOAD_BITS // 4 or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(f"a watermark payload is {PAYLOAD_BITS // 4} hex digits, "
                             f"got {payload!r}")
        value = int(text, 16)
    if not 0 <= value < 1 << PAYLOAD_BITS:
        raise ValueError(f"a watermark payload is {PAYLOAD_BITS} bits, got {payload!r}")
    return value


def _whitening() -> np.ndarray:
    return np.random.default_rng(_SEED).integers(0, 2, N_BITS).astype(np.uint8)


def codeword(payload: str | int) -> np.ndarray:
    """The 64 bits written into every face: the payload's 32 bits, then 32 check bits (the
    first 4 bytes of its SHA-256), XOR a fixed pseudo-random sequence (so that neither an
    all-0 payload nor a picture's own bias looks like a mark). Shape = (64,), uint8."""
    value = parse_payload(payload)
    raw = value.to_bytes(PAYLOAD_BITS // 8, "big")
    check = hashlib.sha256(b"dubber-watermark" + raw).digest()[: CHECK_BITS // 8]
    bits = np.unpackbits(np.frombuffer(raw + check, np.uint8))
    return bits ^ _whitening()


def payload_of(bits: np.ndarray) -> str | None:
    """The payload (8 hex digits) of a decoded codeword whose check bits hold, else None."""
    raw = np.packbits((np.asarray(bits, np.uint8) ^ _whitening())[:PAYLOAD_BITS]).tobytes()
    value = int.from_bytes(raw, "big")
    return f"{value:08x}" if np.array_equal(codeword(value), np.asarray(bits, np.uint8)) else None


def false_match_rate(max_errors: int, candidates: int = N_CANDIDATES + 27) -> float:
    """Upper bound on the chance that an unmarked face reads as the payload: each of the
    ``candidates`` alignments giving random bits within ``max_errors`` of the codeword."""
    p = sum(math.comb(N_BITS, k) for k in range(max_errors + 1)) / 2.0 ** N_BITS
    return min(1.0, candidates * p)


# ------------------------------------------------------------- the canonical face frame


def _disc_weight(size: int = GRID) -> np.ndarray:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    r = np.sqrt(c[None, :] ** 2 + c[:, None] ** 2)
    t = np.clip((r - DISC_FULL) / (DISC_ZERO - DISC_FULL), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)


DISC = _disc_weight()
_NB = GRID // PIX  # blocks per side of the canonical square
BLOCK_WEIGHT = DISC.reshape(_NB, PIX, _NB, PIX).mean(axis=(1, 3))  # (16, 16)
_MIN_BLOCK_WEIGHT = 0.25  # blocks fainter than this carry no bit


def _block_order() -> np.ndarray:
    """Per canonical block, the codeword bit it carries (-1: none), shape = (16, 16)."""
    used = np.flatnonzero(BLOCK_WEIGHT.ravel() >= _MIN_BLOCK_WEIGHT)
    order = np.random.default_rng(_SEED + 1).permutation(used)
    which = np.full(_NB * _NB, -1, np.int64)
    which[order] = np.arange(len(order)) % N_BITS
    return which.reshape(_NB, _NB)


BIT_OF_BLOCK = _block_order()


def face_bit_map(code: np.ndarray) -> np.ndarray:
    """The codeword laid out over the canonical blocks, shape = (16, 16) uint8."""
    return np.where(BIT_OF_BLOCK >= 0, code[np.maximum(BIT_OF_BLOCK, 0)], 0).astype(np.uint8)


@dataclass(frozen=True)
class FaceSquare:
    """Where a face's canonical square lies in a frame: integer pixels, any part may be off
    the frame (that part is read edge-padded and never written)."""

    x0: int
    y0: int
    side: int

    @classmethod
    def from_box(cls, box: Sequence[float], scale: float = 1.0, dx: float = 0.0,
                 dy: float = 0.0) -> "FaceSquare":
        """The square of a face box (x0, y0, x1, y1) float pixels, ``scale`` times the
        standard size and its centre moved by (dx, dy) canonical pixels."""
        bx0, by0, bx1, by1 = (float(v) for v in box)
        side = FACE_SCALE * math.sqrt(max(bx1 - bx0, 1.0) * max(by1 - by0, 1.0)) * scale
        cx = (bx0 + bx1) / 2 + dx * side / GRID
        cy = (by0 + by1) / 2 + dy * side / GRID
        s = max(int(round(side)), 8)
        return cls(int(round(cx - s / 2)), int(round(cy - s / 2)), s)


def read_square(plane: np.ndarray, sq: FaceSquare, size: int = GRID) -> np.ndarray:
    """The square of ``plane`` (H, W) resampled to (size, size) float32 (area average when
    shrinking, bilinear when enlarging; edge-padded past the frame)."""
    h, w = plane.shape
    x0, y0, x1, y1 = sq.x0, sq.y0, sq.x0 + sq.side, sq.y0 + sq.side
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return np.zeros((size, size), np.float32)
    crop = plane[cy0:cy1, cx0:cx1].astype(np.float32)
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        crop = np.pad(crop, ((cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1)), mode="edge")
    interp = cv2.INTER_AREA if sq.side >= size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def _write_square(plane: np.ndarray, sq: FaceSquare, delta: np.ndarray, unit: float) -> None:
    """Add ``delta`` (GRID, GRID), resampled to the square, times ``unit`` to ``plane`` in
    place (rounded, clipped to its dtype's range), inside the frame only."""
    h, w = plane.shape
    big = cv2.resize(delta, (sq.side, sq.side), interpolation=cv2.INTER_LINEAR)
    x0, y0 = sq.x0, sq.y0
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + sq.side, w), min(y0 + sq.side, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    part = big[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] * unit
    region = plane[cy0:cy1, cx0:cx1]
    top = float(np.iinfo(plane.dtype).max) if plane.dtype.kind in "ui" else np.inf
    region[...] = np.clip(np.round(region.astype(np.float32) + part), 0, top).astype(plane.dtype)


SMOOTH = 2.0  # canonical pixels: the Gaussian that softens the blocks' edges in the change
PASSES = 3


def embed_faces(planes: Sequence[np.ndarray], squares: Sequence[FaceSquare], code: np.ndarray,
                scale: float, unit: float = 1.0, passes: int = PASSES) -> None:
    """Write ``code`` into each face's square of its luma plane, in place.

    All faces go through the scheme together (one batched call per pass). The change of
    each pass is blurred (``SMOOTH``), so no block edge shows on smooth skin, then weighted
    by the disc; each further pass reads the canonical squares back and corrects what the
    blur, resampling and rounding left off target.

    Args:
        planes: per face, the luma plane (H, W) it is in (uint8/uint16, writable; the same
            plane may appear for several faces).
        squares: per face, its canonical square in that plane.
        code: the codeword (:func:`codeword`).
        scale: the quantisation step, in 8-bit luma units.
        unit: luma code values per 8-bit unit (4 for 10-bit video).
        passes: embedding passes.
    """
    if not squares:
        return
    bit_map = face_bit_map(code)[None]
    weight = DISC[None] * (BIT_OF_BLOCK >= 0).repeat(PIX, 0).repeat(PIX, 1)[None]
    for _ in range(passes):
        canon = np.stack([read_square(p, sq) / unit for p, sq in zip(planes, squares)])
        delta = embed_planes(canon, bit_map, scale)
        for p, sq, d, w in zip(planes, squares, delta, np.broadcast_to(weight, delta.shape)):
            if SMOOTH > 0:
                d = cv2.GaussianBlur(d, (0, 0), SMOOTH, borderType=cv2.BORDER_REFLECT)
            _write_square(p, sq, d * w, unit)


@dataclass(frozen=True)
class FaceReading:
    """What :func:`decode_face` read in one face.

    Attributes:
        bits: shape = (64,) uint8, the decoded codeword at the best alignment.
        soft: shape = (64,) float32 in [-1, 1], its soft values.
        accuracy: fraction of ``bits`` equal to the expected codeword.
        errors: number of bits that differ from it.
        square: the best alignment.
    """

    bits: np.ndarray
    soft: np.ndarray
    accuracy: float
    errors: int
    square: FaceSquare

    def agreement(self, code: np.ndarray) -> float:
        """Mean of the soft bits signed by ``code``: 1 for a clean mark, about 0 without."""
        return float(self.soft @ (code.astype(np.float32) * 2 - 1)) / N_BITS

    def box(self) -> tuple[float, float, float, float]:
        """A face box whose standard square is :attr:`square` (a hint for the next frame)."""
        side = self.square.side / FACE_SCALE
        c = self.square.side / 2
        x, y = self.square.x0 + c, self.square.y0 + c
        return x - side / 2, y - side / 2, x + side / 2, y + side / 2


def _bit_matrix() -> np.ndarray:
    """(256, 64) float32: block b's weight in the column of the bit it carries."""
    a = np.zeros((_NB * _NB, N_BITS), np.float32)
    used = np.flatnonzero(BIT_OF_BLOCK.ravel() >= 0)
    a[used, BIT_OF_BLOCK.ravel()[used]] = BLOCK_WEIGHT.ravel()[used]
    return a / a.sum(0, keepdims=True)


_BITS_OF_BLOCKS = _bit_matrix()


def _soft_codewords(fractions: np.ndarray) -> np.ndarray:
    """Block fractions (K, 16, 16) of canonical squares -> soft codewords (K, 64) in
    [-1, 1] (each bit the weighted mean of its blocks' soft values)."""
    return soft_bits(fractions).reshape(len(fractions), -1) @ _BITS_OF_BLOCKS


def _window_norm(ll: np.ndarray) -> np.ndarray:
    """The Frobenius norm of the 4x4 block at every position of an LL band (h, w) ->
    (h - 3, w - 3). It is ``sqrt(s0^2 + s1^2 + ...)``: on a face's LL blocks within a few
    units of s0 (mean 0.4, 99th percentile 5.5 on a 1080p face, against a tolerance of a
    quarter step, 16 at the default strength), so the alignment search ranks candidates by
    it at a fraction of the cost; the final reading uses s0 itself."""
    sq = cv2.boxFilter(ll * ll, -1, (BLOCK, BLOCK), normalize=False, anchor=(0, 0),
                       borderType=cv2.BORDER_CONSTANT)
    h, w = ll.shape
    return np.sqrt(sq[: h - BLOCK + 1, : w - BLOCK + 1])


def _coarse_view(plane: np.ndarray, box: Sequence[float],
                 big: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """A large face shrunk once (area average, to about twice the canonical size) for the
    alignment search, and the box in its pixels; a small face as it is."""
    side = FaceSquare.from_box(box).side
    if side < 4 * big:
        return plane, tuple(box)
    outer = FaceSquare.from_box(box, max(SEARCH_SCALES) * big / GRID * 1.05)
    size = max(2 * big, int(round(outer.side * 2 * big / side)))
    k = size / outer.side
    view = read_square(plane, outer, size)
    x0, y0, x1, y1 = (float(v) for v in box)
    return view, ((x0 - outer.x0) * k, (y0 - outer.y0) * k, (x1 - outer.x0) * k,
                  (y1 - outer.y0) * k)


def decode_face(plane: np.ndarray, box: Sequence[float], code: np.ndarray, scale: float,
                unit: float = 1.0) -> FaceReading:
    """Read the codeword in one face, searching the alignment around its box.

    Every candidate square (centre shifted by whole canonical pixels, up to
    :data:`SEARCH_MARGIN`, at each of :data:`SEARCH_SCALES`) is read at once: per scale, the
    square grown by the margin is resampled once, and the norm of the 4x4 LL block at every
    position of its four pixel-parity Haar bands (:func:`_window_norm`) gives every shifted
    square's blocks by indexing. Then the 27 squares half a pixel and half a scale step
    around the best are read and decoded exactly.

    Args:
        plane: the luma plane (H, W), any integer or float dtype.
        box: (x0, y0, x1, y1) float pixels, the detected face.
        code: the expected codeword; the alignment that agrees best with it is kept.
        scale: the quantisation step used when embedding (8-bit units).
        unit: luma code values per 8-bit unit.
    """
    m = SEARCH_MARGIN
    big = GRID + 2 * m
    shifts = np.arange(-m, m + 1)
    blocks = np.arange(_NB) * BLOCK
    fracs, params = [], []
    coarse, cbox = _coarse_view(plane, box, big)
    for sc in SEARCH_SCALES:
        wide = read_square(coarse, FaceSquare.from_box(cbox, sc * big / GRID), big) / unit
        for py in (0, 1):
            for px in (0, 1):
                part = wide[py: py + (big - py) // 2 * 2, px: px + (big - px) // 2 * 2]
                s0 = _window_norm(haar_ll(part))
                dys, dxs = shifts[(m + shifts) % 2 == py], shifts[(m + shifts) % 2 == px]
                oy, ox = (m + dys - py) // 2, (m + dxs - px) // 2
                rows = (oy[:, None] + blocks)[:, None, :, None]
                cols = (ox[:, None] + blocks)[None, :, None, :]
                fracs.append(np.mod(s0[rows, cols], scale).reshape(-1, _NB, _NB) / scale)
                params += [(sc, dy, dx) for dy in dys for dx in dxs]
    soft = _soft_codewords(np.concatenate(fracs))
    signs = code.astype(np.float32) * 2 - 1
    best = int(np.argmax(soft @ signs))
    sc, dy, dx = params[best]
    # Then half a canonical pixel and half a scale step around the best, read directly.
    squares = [FaceSquare.from_box(box, sc * (1 + es), dx + ex, dy + ey)
               for es in (-0.005, 0.0, 0.005) for ey in (-0.5, 0.0, 0.5) for ex in (-0.5, 0.0, 0.5)]
    canon = np.stack([read_square(plane, sq) / unit for sq in squares])
    fine = _soft_codewords(block_fractions(canon, scale))
    k = int(np.argmax(fine @ signs))
    bits = (fine[k] > 0).astype(np.uint8)
    errors = int((bits != code).sum())
    return FaceReading(bits, fine[k], 1.0 - errors / N_BITS, errors, squares[k])
