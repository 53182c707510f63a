"""The same actor's other shots: banks of one actor pooled, own shot first.

A dubbed line often sits in a short shot whose own frames hold few mouth shapes, while the
same actor speaks in other shots of the film. :func:`pool_banks` finds, among the dubbed
tracks' banks, those of the same actor (:func:`actor_distance`) and gives each track a
:class:`BankPool`: its own bank's rows first, unchanged, then the kept frames of the
others. The path (:mod:`dubber.mouth.choose`) pays ``MouthConfig.other_shot`` for a frame
from another shot, so the track's own shot is used first; the warp and the colour match
carry another shot's mouth onto this one's face and light as they do within a shot.

Who is the same actor, without a face-recognition network (none ships in a wheel we may
use): two tracks are linked when both their face shapes (the median
:func:`~dubber.mouth.geometry.pose_shape` of their frames: eye corners, nose, cheeks,
scale and roll taken out) and their lower-face colours (median chromaticity) agree within
``MouthConfig.link_shape`` and ``link_colour``. Measured on seven shared talking clips
(the two halves of each clip against each other and against the other clips' halves): the
same actor 0.002-0.038 apart in shape (the higher ones where the head turns) and
0.0007-0.008 in colour; different actors 0.014-0.096 and 0.010-0.14. Shape alone does not
tell actors apart, colour mostly does (under one film's grade two actors can be closer);
both must hold, so a link needs a face of the same build in the same tone: a wrong link is
worse than none (another actor's mouth), a missed one only leaves a shot to its own frames.
Only dubbed tracks have banks, so the pool holds the actor's other *speaking* shots.
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from dubber.mouth.bank import MouthBank

log = logging.getLogger(__name__)


def descriptor(bank: MouthBank) -> tuple[np.ndarray, np.ndarray] | None:
    """(face shape, lower-face chromaticity) of a bank's actor, or None for an empty bank."""
    if len(bank.frames) == 0:
        return None
    colour = bank.colour.astype(np.float64)
    chroma = colour / np.maximum(colour.sum(1, keepdims=True), 1e-6)
    return np.median(bank.pose.astype(np.float64), 0), np.median(chroma, 0)


def actor_distance(a: tuple[np.ndarray, np.ndarray],
                   b: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(shape, colour) distances of two :func:`descriptor`\\ s: the RMS difference of the
    face shapes in eye distances, the Euclidean one of the chromaticities."""
    return (float(np.sqrt(np.mean((a[0] - b[0]) ** 2))), float(np.linalg.norm(a[1] - b[1])))


class _Rows:
    """A read-only array of per-row values over several banks, indexed like a numpy array
    (an int, a slice or an array of rows) without copying the big ones (the meshes)."""

    def __init__(self, parts: list[np.ndarray], origin: np.ndarray, local: np.ndarray) -> None:
        self.parts, self.origin, self.local = parts, origin, local

    def __len__(self) -> int:
        return len(self.origin)

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self.parts[self.origin[idx]][self.local[idx]]
        rows = np.arange(len(self.origin))[idx]
        if len(rows) == 0:
            return self.parts[0][:0]
        return np.stack([self.parts[self.origin[r]][self.local[r]] for r in rows])


class BankPool:
    """One track's bank followed by the kept frames of the same actor's other tracks.

    It reads like a :class:`~dubber.mouth.bank.MouthBank`: rows ``0 .. len(own.frames)-1``
    are the own bank's, unchanged (so :meth:`row` and the own meshes are as before); the
    rest are other tracks' kept frames. ``foreign`` marks those, ``origin`` says which
    track each row comes from. The small per-row arrays (parameters, pose, colour, detail)
    are copied; meshes and crops are read from the other banks.
    """

    def __init__(self, own: MouthBank, others: list[MouthBank], max_rows: int) -> None:
        self.own = own
        self.track_id = own.track_id
        banks = [own] + others
        parts = [np.arange(len(own.frames))]
        room = max_rows
        for b in others:
            rows = np.flatnonzero(b.kept)[:max(room, 0)]
            room -= len(rows)
            parts.append(rows)
        self._banks = banks
        self._origin = np.concatenate([np.full(len(r), k, np.int64) for k, r in enumerate(parts)])
        self._local = np.concatenate(parts).astype(np.int64)
        self.origin = np.array([b.track_id for b in banks], np.int64)[self._origin]
        self.foreign = self._origin > 0
        for name in ("frames", "params", "pose", "colour", "detail"):
            setattr(self, name, np.concatenate([getattr(b, name)[r] for b, r in zip(banks, parts)]))
        self.kept = np.concatenate([own.kept, np.ones(len(self._origin) - len(own.frames), bool)])
        self.points = _Rows([b.points for b in banks], self._origin, self._local)

    def __len__(self) -> int:
        return int(self.kept.sum())

    def row(self, frame: int) -> int | None:
        """The own bank's row of ``frame`` (another track's frames are never the target)."""
        return self.own.row(frame)

    def hands_at(self, frame: int) -> np.ndarray:
        """The hands before the face on the own track's ``frame``."""
        return self.own.hands_at(frame)

    def crop(self, row: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The kept crop of ``row``, from whichever bank it comes from."""
        return self._banks[self._origin[row]].crop(int(self._local[row]))


def pool_banks(banks: Mapping[int, MouthBank], link_shape: float, link_colour: float,
               max_rows: int) -> dict[int, MouthBank | BankPool]:
    """Each track's bank, pooled with the same actor's other tracks when there are any.

    Args:
        banks: track id -> its bank (the dubbed tracks).
        link_shape, link_colour: the most shape and colour distance
            (:func:`actor_distance`) between two tracks of one actor.
        max_rows: most rows taken from other tracks per pool (nearest actors first).

    Returns:
        track id -> its bank alone, or a :class:`BankPool`.
    """
    desc = {tid: descriptor(b) for tid, b in banks.items() if b is not None}
    out: dict[int, MouthBank | BankPool] = dict(banks)
    for tid, d in desc.items():
        if d is None:
            continue
        near = []
        for other, e in desc.items():
            if other == tid or e is None or not banks[other].kept.any():
                continue
            shape, colour = actor_distance(d, e)
            if shape <= link_shape and colour <= link_colour:
                near.append((shape / link_shape + colour / link_colour, other))
        if near:
            near.sort()
            out[tid] = BankPool(banks[tid], [banks[o] for _, o in near], max_rows)
            log.info("mouth bank of track %d: also track(s) %s (the same actor in other shots)",
                     tid, ", ".join(str(o) for _, o in near))
    return out
