"""Which bank frame each dubbed frame shows: one shortest path per speaking window.

For every frame to dub, the candidates are the bank's kept frames; a candidate's cost is
how far its mouth is from the target mouth (the driver's parameters, in the actor's units),
how far its head pose is from the frame's, how different its light is, and whether it
comes from another shot of the actor (:mod:`dubber.mouth.actors`: own shot first).
Between two consecutive frames, moving on to the next frame of the bank (real motion) is free, holding
the same bank frame costs a little, and any other jump costs ``jump``. Viterbi over the
``candidates`` cheapest per frame gives the path; each remaining jump is then cross-faded
over ``crossfade`` frames (the old run continues underneath while the new one fades in;
both are warped to one shape, so it is a morph). The weights and lengths are
:class:`~dubber.config.MouthConfig`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubber.config import MouthConfig
from dubber.mouth.bank import MouthBank


@dataclass(frozen=True)
class Blend:
    """What one dubbed frame shows: bank rows and their weights (summing to 1)."""

    rows: tuple[int, ...]
    weights: tuple[float, ...]
    cost: float


def face_scale(points: np.ndarray) -> np.ndarray:
    """Eye-corner distance in pixels of each mesh, shape = (...,): the face's size."""
    return np.linalg.norm(points[..., 263, :] - points[..., 33, :], axis=-1)


def unary_costs(bank: MouthBank, target: np.ndarray, pose: np.ndarray, colour: np.ndarray,
                cfg: MouthConfig, scale: np.ndarray | None = None,
                detail: np.ndarray | None = None) -> np.ndarray:
    """Cost of every kept bank row for every target frame.

    Args:
        bank: the actor's bank.
        target: shape = (T, 3): the target mouth parameters.
        pose: shape = (T, P): the target frames' pose shapes.
        colour: shape = (T, 3): the target frames' lower-face mean colour.
        scale: shape = (T,): the target faces' size in pixels (:func:`face_scale`); a bank
            face smaller than that would be blown up, and lose sharpness.
        detail: shape = (T,): the target frames' own mouth sharpness
            (:func:`~dubber.mouth.bank.mouth_detail`); a blurrier bank mouth costs more.

    Returns:
        shape = (T, B) float64 over ``bank.kept`` rows (in order); inf where excluded.
    """
    rows = np.flatnonzero(bank.kept)
    w = np.asarray(cfg.param_weights, np.float64)
    dp = ((target[:, None, :] - bank.params[rows][None]) ** 2 * w).sum(-1)
    dq = ((pose[:, None, :] - bank.pose[rows][None]) ** 2).sum(-1)
    dc = ((colour[:, None, :] - bank.colour[rows][None]) ** 2).sum(-1)
    cost = dp + cfg.pose_weight * dq / pose.shape[1] + cfg.light_weight * dc
    cost += cfg.other_shot * bank.foreign[rows][None]
    if scale is not None:
        own = face_scale(bank.points[rows].astype(np.float64))
        up = np.log(np.maximum(scale[:, None], 1e-6) / np.maximum(own[None], 1e-6))
        cost += cfg.scale_weight * np.maximum(up, 0.0) ** 2
    if detail is not None:
        own = np.maximum(bank.detail[rows].astype(np.float64), 1e-3)
        soft = np.log(np.maximum(detail[:, None], 1e-3) / own[None]) - cfg.detail_margin
        cost += cfg.detail_weight * np.maximum(soft, 0.0) ** 2
    return cost


def shortest_path(cost: np.ndarray, follows: np.ndarray, cfg: MouthConfig) -> np.ndarray:
    """Viterbi over each frame's ``cfg.candidates`` cheapest columns.

    Args:
        cost: shape = (T, B): unary costs.
        follows: shape = (B,), bool: column b+1 is the frame right after column b.

    Returns:
        shape = (T,), int64: the chosen column per frame.
    """
    t_n, b_n = cost.shape
    k = min(cfg.candidates, b_n)
    cand = np.argsort(cost, axis=1)[:, :k]  # (T, K)
    acc = cost[0, cand[0]].copy()
    back = np.zeros((t_n, k), np.int64)
    for t in range(1, t_n):
        prev, cur = cand[t - 1], cand[t]
        trans = np.full((k, k), cfg.jump)
        trans[prev[:, None] == cur[None, :]] = cfg.hold
        nxt = (prev[:, None] + 1 == cur[None, :]) & follows[prev][:, None]
        trans[nxt] = 0.0
        total = acc[:, None] + trans
        back[t] = np.argmin(total, axis=0)
        acc = total[back[t], np.arange(k)] + cost[t, cur]
    path = np.zeros(t_n, np.int64)
    j = int(np.argmin(acc))
    for t in range(t_n - 1, -1, -1):
        path[t] = cand[t, j]
        j = back[t, j]
    return path


def choose(bank: MouthBank, target: np.ndarray, pose: np.ndarray, colour: np.ndarray,
           cfg: MouthConfig, scale: np.ndarray | None = None,
           detail: np.ndarray | None = None) -> list[Blend | None]:
    """The blends of one speaking window (consecutive frames); arguments as in
    :func:`unary_costs`.

    Returns:
        Per frame a :class:`Blend` of bank rows, or None where no bank frame is close
        enough (``max_cost``; the fallback renders those) or the bank is empty.
    """
    rows = np.flatnonzero(bank.kept)
    if len(rows) == 0 or len(target) == 0:
        return [None] * len(target)
    cost = unary_costs(bank, target, pose, colour, cfg, scale, detail)
    finite = np.isfinite(cost).any(axis=1)
    cost = np.where(np.isfinite(cost), cost, 1e9)
    kept_frames = bank.frames[rows]
    follows = np.zeros(len(rows), bool)
    origin = bank.origin[rows]
    follows[:-1] = (kept_frames[1:] == kept_frames[:-1] + 1) & (origin[1:] == origin[:-1])
    path = shortest_path(cost, follows, cfg)
    chosen = rows[path]
    out: list[Blend | None] = []
    for t, row in enumerate(chosen):
        c = float(cost[t, path[t]])
        out.append(Blend((int(row),), (1.0,), c) if finite[t] and c <= cfg.max_cost else None)
    _crossfade(out, path, rows, follows, cfg.crossfade)
    return out


def _crossfade(out: list[Blend | None], path: np.ndarray, rows: np.ndarray,
               follows: np.ndarray, length: int) -> None:
    """Fade each jump in over ``length`` frames, the previous run continuing underneath
    (it holds its last frame where the bank's run ends)."""
    if length <= 0:
        return
    n = len(path)
    for t in range(1, n):
        if out[t] is None or out[t - 1] is None:
            continue
        p, c = path[t - 1], path[t]
        if c == p or (c == p + 1 and follows[p]):
            continue
        old = p
        for k in range(length):
            if t + k >= n or out[t + k] is None:
                break
            if follows[old]:
                old += 1
            w_new = (k + 1) / (length + 1)
            cur = out[t + k]
            merged = dict(zip(cur.rows, (w * w_new for w in cur.weights)))
            merged[int(rows[old])] = merged.get(int(rows[old]), 0.0) + (1 - w_new)
            out[t + k] = Blend(tuple(merged), tuple(merged.values()), cur.cost)
