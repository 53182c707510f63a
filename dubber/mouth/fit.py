"""Fit the driver's regressor on talking-head videos and publish it to the weights folder.

    python -m dubber.mouth.fit [VIDEO ...] [--hold-out NAME ...] [--weights DIR]
                               [--cache DIR] [--lam L] [--dry-run]
                               [--learning-curve [--draws K]]
                               [--cross-fit VIDEO ... [--folds K]]

Ground truth is the speaking face's mouth parameters from the analysis pass (face mesh,
:mod:`dubber.mouth.truth`); inputs are the driver's speaker- and language-independent
features of the video's own audio. Targets are standardised per video (the regressor
learns how mouths move, not whose mouth it is). Each video's audio-to-picture offset
(muxing delays of up to a few frames are common in downloaded clips) is removed before the
fit, within +-``MAX_SHIFT``: as the sync model measures it (:func:`measured_offsets`), or,
for a video it cannot judge and with ``--offsets fit``, by cross-validation
(:func:`audio_offsets`). The fit is a
ridge regression (closed form, seconds on a CPU). Default videos: every
``../shared/media/corpus`` video except the held-out ones. ``--learning-curve`` publishes
nothing: it prints how the opening's r on a video never fitted on grows with the number of
training videos (:func:`learning_curve`), which says whether more footage would help.
``--cross-fit VIDEO ...`` publishes nothing either: it scores those videos by the whole
driver fitted on the training videos alone and on the training videos plus the other
judged videos (:func:`cross_fit`), zero-shot and calibrated.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dubber.errors import DubberError
from dubber.media.audio import load_audio
from dubber.models.dims import MouthDriverDims
from dubber.mouth.driver import MouthDriver, SpeechAnalysis
from dubber.mouth.features import CONTEXT_OFFSETS, CONTEXT_WIDTH, N_FEATURES
from dubber.mouth.regressor import MouthRegressor
from dubber.mouth.truth import mouth_truth

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "media" / "corpus"
HOLD_OUT = ("congress_en_256_60s", "anchor_de_512_20s")
LAMBDA = 30000.0  # ridge penalty on standardised features (leave-one-video-out: 10k 0.508,
# 30k 0.517, 60k 0.517 on 2026-11-30, with the encoder's second layer)
MAX_SHIFT = 0.2  # s: the largest audio-to-picture offset removed from a training video
SHIFT_STEP = 0.02  # s
TARGET_SMOOTH = 0.04  # s: Gaussian sigma over the targets: the mesh's frame-to-frame
# jitter is not the lips' (leave-one-video-out opening r 0.330 -> 0.344, width 0.354 -> 0.361)


@dataclass
class Clip:
    """One video's audio analysis and its speaking face's mouth, per frame."""

    name: str
    times: np.ndarray  # (N,) seconds
    truth: np.ndarray  # (N, 3) mouth params, NaN where unknown
    analysis: SpeechAnalysis


def prepare(video: str | Path, driver: MouthDriver, cache_dir: str | Path | None = None) -> Clip:
    """Analyse a video's picture (face mesh, cached) and its own audio."""
    times, truth = mouth_truth(video, cache_dir=cache_dir)
    # from the sound's first sample (as the shipped fit was made): the fit finds and removes
    # each video's audio offset, that of a picture starting late included
    analysis = driver.analyse(load_audio(video))
    return Clip(Path(video).stem, times, truth, analysis)


def _standardise(y: np.ndarray, times: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-video z-scores of the mouth parameters, smoothed over ``TARGET_SMOOTH`` when
    the frame ``times`` are given (NaN frames neither count nor change)."""
    ok = np.all(np.isfinite(y), 1)
    z = (y - y[ok].mean(0)) / (y[ok].std(0) + 1e-6)
    if times is not None and TARGET_SMOOTH > 0 and len(times) > 1:
        from scipy.ndimage import gaussian_filter1d

        sigma = TARGET_SMOOTH / float(np.median(np.diff(times)))
        w = gaussian_filter1d(ok.astype(np.float64), sigma, mode="nearest")
        zs = gaussian_filter1d(np.where(ok[:, None], z, 0.0), sigma, axis=0, mode="nearest")
        z = np.where(ok[:, None], zs / np.maximum(w, 1e-6)[:, None], np.nan)
    return z, ok


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def ridge(clips: list[Clip], driver: MouthDriver, shifts: dict[str, float], lam: float):
    """Closed-form ridge on standardised features; returns (mean, std, W (D, 3))."""
    xs, ys = [], []
    for c in clips:
        z, ok = _standardise(c.truth, c.times)
        xs.append(driver.features(c.analysis, c.times + shifts.get(c.name, 0.0))[ok])
        ys.append(z[ok])
    x = np.concatenate(xs).astype(np.float64)
    y = np.concatenate(ys)
    mu, sd = x.mean(0), x.std(0) + 1e-3
    mu[-1], sd[-1] = 0.0, 1.0  # the constant column
    xn = (x - mu) / sd
    w = np.linalg.solve(xn.T @ xn + lam * np.eye(x.shape[1]), xn.T @ y)
    return mu, sd, w


def _predict(fit, x: np.ndarray) -> np.ndarray:
    mu, sd, w = fit
    return ((x - mu) / sd) @ w


def best_shift(fit, clip: Clip, driver: MouthDriver) -> float:
    """The audio offset (s) at which ``fit`` predicts ``clip``'s opening best."""
    best = (-2.0, 0.0)
    for sh in np.arange(-MAX_SHIFT, MAX_SHIFT + 1e-9, SHIFT_STEP):
        r = _corr(_predict(fit, driver.features(clip.analysis, clip.times + sh))[:, 0],
                  clip.truth[:, 0])
        if r > best[0]:
            best = (r, float(sh))
    return best[1]


def audio_offsets(clips: list[Clip], driver: MouthDriver, lam: float = LAMBDA,
                  measured: dict[str, float] | None = None) -> dict[str, float]:
    """Each video's audio-to-picture offset (s): ``measured`` (:func:`measured_offsets`)
    where it has the video, else found by a fit on the other videos (twice, the second
    time on the others re-aligned); only ``measured`` for fewer than 3 videos.

    Cross-validation alone fixes the videos' offsets only against each other: where they
    sit together (the driver's zero) is whatever the training videos' muxing averages to.
    """
    shifts = {c.name: measured[c.name] for c in clips if c.name in (measured or {})}
    left = [c for c in clips if c.name not in shifts]
    if len(clips) > 2 and left:
        for _ in range(2):
            shifts.update({c.name: best_shift(ridge([o for o in clips if o is not c], driver,
                                                    shifts, lam), c, driver) for c in left})
    return shifts


def measured_offsets(videos: list[Path], max_shift: float | None = MAX_SHIFT
                     ) -> dict[str, float]:
    """Each video's audio-to-picture offset (s, the shift of its sound as :func:`prepare`
    reads it, from the first sample) as the sync model measures it
    (:func:`~dubber.sync.check.check_sync`: the median over its judged shots), within
    +-``max_shift`` (None: as measured), by file stem. Videos it cannot judge (no judged
    shot, no readable face) are left out.

    Why not the regressor's own cross-validation (:func:`audio_offsets`): that places the
    videos against each other, not against the sound; the sync model, another network
    trained to find offsets, has a zero of its own. On the 6 training videos the two
    differed by 20 to 60 ms, always the same way (weights/README.md, "The training videos'
    offsets from the sync model").
    """
    from dubber.media.audio import picture_lead
    from dubber.sync.check import check_sync

    out: dict[str, float] = {}
    for video in map(Path, videos):
        try:
            ms = check_sync(video).median_offset_ms
        except DubberError as exc:
            log.warning("%s: no measured offset (%s)", video.name, exc)
            continue
        if ms is None:
            log.info("%s: the sync model judges no shot", video.name)
            continue
        # check_sync reads the sound from the sample that plays with the first frame
        shift = ms / 1000 + picture_lead(video)
        if max_shift is not None:
            shift = np.clip(shift, -max_shift, max_shift)
        out[video.stem] = round(float(shift), 3)
    return out


def learning_curve(clips: list[Clip], driver: MouthDriver, sizes: list[int],
                   draws: int = 8, lam: float = LAMBDA, seed: int = 0,
                   measured: dict[str, float] | None = None) -> list[dict]:
    """The regressor's opening r on a video never fitted on, by number of training videos.

    For each size ``n`` and each video, ``draws`` random sets of ``n`` of the OTHER videos
    are fitted on (their offsets removed, :func:`audio_offsets` with ``measured``, found
    once over all the videos) and the regressor alone (no timing rules) is scored on the video.

    Returns:
        one dict per size that fits (``n`` < number of videos): ``videos`` (n), ``r`` (the
        mean over videos and draws), ``sd`` (the spread of the per-draw means), ``fits``.
    """
    rng = np.random.default_rng(seed)
    shifts = audio_offsets(clips, driver, lam, measured)
    feats = {c.name: driver.features(c.analysis, c.times) for c in clips}
    out = []
    for n in sizes:
        if not 1 <= n < len(clips):
            continue
        per_draw = np.zeros((draws, len(clips)))
        for i, c in enumerate(clips):
            others = [o for o in clips if o is not c]
            for d in range(draws):
                pick = [others[j] for j in rng.choice(len(others), n, replace=False)]
                per_draw[d, i] = _corr(_predict(ridge(pick, driver, shifts, lam),
                                                feats[c.name])[:, 0], c.truth[:, 0])
        means = np.nanmean(per_draw, 1)
        out.append({"videos": n, "r": round(float(np.mean(means)), 3),
                    "sd": round(float(np.std(means)), 3), "fits": int(per_draw.size)})
    return out


def fit_regressor(clips: list[Clip], driver: MouthDriver, lam: float = LAMBDA,
                  align: bool = True, measured: dict[str, float] | None = None
                  ) -> tuple[MouthRegressor, dict]:
    """Fit on ``clips``, each with its offset removed (``measured`` where given, else
    found: :func:`audio_offsets`; none without ``align``); returns the regressor and its
    figures (leave-one-video-out r)."""
    shifts = audio_offsets(clips, driver, lam, measured) if align else {}
    if shifts:
        log.info("audio offsets removed: %s", {k: round(v, 2) for k, v in shifts.items()})
    lovo = []
    if len(clips) > 2:
        for c in clips:
            f = ridge([o for o in clips if o is not c], driver, shifts, lam)
            p = _predict(f, driver.features(c.analysis, c.times))
            lovo.append([_corr(p[:, i], c.truth[:, i]) for i in range(3)])
    model = _regressor(ridge(clips, driver, shifts, lam), clips, driver)
    figures = {"frames": int(sum(np.all(np.isfinite(c.truth), 1).sum() for c in clips)),
               "videos": len(clips)}
    if lovo:
        m = np.nanmean(lovo, 0)
        figures.update({"lovo_r_opening": round(float(m[0]), 3),
                        "lovo_r_width": round(float(m[1]), 3),
                        "lovo_r_rounding": round(float(m[2]), 3)})
    figures["offsets_s"] = {k: round(v, 2) for k, v in shifts.items()}
    return model.eval(), figures


def _regressor(fit, clips: list[Clip], driver: MouthDriver) -> MouthRegressor:
    """The regressor of a :func:`ridge` ``fit`` on ``clips``, in face-mesh units, ready for
    a :class:`MouthDriver`."""
    mu, sd, w = fit
    # Ridge shrinks towards the mean: give the predictions the swing of real mouths (unit
    # spread per video), so that rule-made closures are not outliers against them.
    spread = np.mean([_predict((mu, sd, w), driver.features(c.analysis, c.times)).std(0)
                      for c in clips], 0)
    w = w / np.maximum(spread, 1e-3)
    model = MouthRegressor(MouthDriverDims(N_FEATURES, 0, 3, CONTEXT_OFFSETS, CONTEXT_WIDTH))
    means = np.array([np.nanmean(c.truth, 0) for c in clips])
    stds = np.array([np.nanstd(c.truth, 0) for c in clips])
    rest = _rest(clips, driver)
    with torch.no_grad():
        model.in_mean.copy_(torch.from_numpy(mu))
        model.in_std.copy_(torch.from_numpy(sd))
        model.out_mean.copy_(torch.from_numpy(means.mean(0)))
        model.out_std.copy_(torch.from_numpy(stds.mean(0)))
        model.rest.copy_(torch.from_numpy(rest))
        model.net.weight.copy_(torch.from_numpy(w.T))
        model.net.bias.zero_()
    return model.eval()


def cross_fit(train: list[Clip], others: list[Clip], driver: MouthDriver, folds: int = 0,
              lam: float = LAMBDA, measured: dict[str, float] | None = None) -> list[dict]:
    """What more training speakers buy on videos kept for judging: each of ``others`` is
    scored by the whole driver (timing rules included) fitted on ``train`` alone, and
    fitted on ``train`` with the ``others`` outside its fold (``folds`` folds, every
    ``folds``-th video in one; 0: one fold per video).

    The ``others``' offsets are ``measured`` or else found by the fit on ``train`` alone,
    so that no judged video's lips choose another's. Scores: the opening's r at lag 0 over the whole video
    (zero-shot), and calibrated on its first half (:func:`~dubber.mouth.calibrate.
    calibrate`, the adaptation included) and measured on its second, as the driver's
    bench does.

    Returns:
        one dict per video of ``others``: ``name``, ``fold``, ``alone`` and ``more`` (each
        (zero-shot r, calibrated r)), ``videos`` (how many the larger fit had).
    """
    from dubber.mouth.calibrate import calibrate

    measured = measured or {}
    shifts = audio_offsets(train, driver, lam, measured)
    base = ridge(train, driver, shifts, lam)
    shifts.update({c.name: measured[c.name] if c.name in measured
                   else best_shift(base, c, driver) for c in others})
    folds = len(others) if folds <= 0 else min(folds, len(others))

    def score(c: Clip, d: MouthDriver) -> tuple[float, float]:
        h = len(c.times) // 2
        zero = _corr(d.track(c.analysis, c.times).opening, c.truth[:, 0])
        try:
            cal = calibrate(c.truth[:h], c.times[:h], c.analysis, d)
        except ValueError:  # too few measured frames in the first half
            return zero, float("nan")
        return zero, _corr(d.track(c.analysis, c.times[h:], calibration=cal).opening,
                           c.truth[h:, 0])

    alone = MouthDriver(regressor=_regressor(base, train, driver), workers=0)
    rows: list[dict] = [{} for _ in others]
    for f in range(folds):
        keep = train + [c for i, c in enumerate(others) if i % folds != f]
        more = MouthDriver(regressor=_regressor(ridge(keep, driver, shifts, lam), keep, driver),
                           workers=0)
        for i in range(f, len(others), folds):
            rows[i] = {"name": others[i].name, "fold": f, "alone": score(others[i], alone),
                       "more": score(others[i], more), "videos": len(keep)}
    return rows


def _rest(clips: list[Clip], driver: MouthDriver) -> np.ndarray:
    """The mouth at rest: opening of a shut mouth (each video's 5th percentile), width and
    rounding in silence (each video's mean over frames the rules call X), averaged."""
    out = []
    for c in clips:
        shut = np.nanpercentile(c.truth[:, 0], 5)
        step = np.clip(np.rint(c.times * 100).astype(int), 0, len(c.analysis.speech) - 1)
        silent = ~c.analysis.speech[step] & np.all(np.isfinite(c.truth), 1)
        wr = c.truth[silent, 1:].mean(0) if silent.sum() >= 5 else np.nanmean(c.truth[:, 1:], 0)
        out.append([shut, *wr])
    return np.mean(out, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.mouth.fit",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="*", help="talking-head videos (default: the corpus)")
    ap.add_argument("--hold-out", nargs="*", default=list(HOLD_OUT),
                    help="video names (stems) never fitted on")
    ap.add_argument("--weights", default=None, help="weights folder to publish into")
    ap.add_argument("--cache", default=None, help="analysis cache folder")
    ap.add_argument("--lam", type=float, default=LAMBDA)
    ap.add_argument("--offsets", choices=("sync", "fit"), default="sync",
                    help="each video's audio-to-picture offset, removed before fitting: as "
                         "the sync model measures it (default; fitted where it judges no "
                         "shot), or found by cross-validation")
    ap.add_argument("--dry-run", action="store_true", help="fit and print, publish nothing")
    ap.add_argument("--learning-curve", action="store_true",
                    help="print r on unseen videos by number of training videos; publish "
                         "nothing")
    ap.add_argument("--draws", type=int, default=8,
                    help="random training sets per video and size (--learning-curve)")
    ap.add_argument("--cross-fit", nargs="+", default=[], metavar="VIDEO",
                    help="score these videos by the driver fitted on the training videos "
                         "alone and with the other ones of these outside its fold (what more "
                         "speakers buy); publish nothing")
    ap.add_argument("--folds", type=int, default=0,
                    help="folds of the --cross-fit videos (default: one per video)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    videos = [Path(v) for v in a.videos] or sorted(CORPUS.glob("*.mp4"))
    videos = [v for v in videos if v.stem not in set(a.hold_out)]
    if not videos:
        print("no videos to fit on", file=sys.stderr)
        return 2
    if (a.learning_curve or a.cross_fit) and len(videos) < 3:
        what = "a learning curve" if a.learning_curve else "--cross-fit"
        print(f"{what} needs at least 3 training videos", file=sys.stderr)
        return 2
    judged = [Path(v) for v in a.cross_fit]
    driver = MouthDriver(regressor=MouthRegressor(MouthDriverDims()))
    clips: list[Clip] = []
    others: list[Clip] = []
    try:
        for group, paths in ((clips, videos), (others, judged)):
            for v in paths:
                log.info("analysing %s", v.name)
                group.append(prepare(v, driver, a.cache))
    except DubberError as exc:
        print(f"{ap.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        driver.close()
    measured = {}
    if a.offsets == "sync":
        log.info("measuring the videos' audio offsets (the sync model)")
        measured = measured_offsets(videos + judged)
    if others:
        logging.getLogger("dubber.mouth.calibrate").setLevel(logging.WARNING)  # a line each
        rows = cross_fit(clips, others, driver, a.folds, a.lam, measured)
        print(f"opening r of the whole driver on each --cross-fit video: fitted on the "
              f"{len(clips)} training videos alone | with the other --cross-fit videos "
              "outside its fold; zero-shot (the whole video) and calibrated (first half -> "
              "second)")
        for row in rows + [{"name": "mean", "alone": np.nanmean([r["alone"] for r in rows], 0),
                            "more": np.nanmean([r["more"] for r in rows], 0),
                            "videos": max(r["videos"] for r in rows)}]:
            (z0, c0), (z1, c1) = row["alone"], row["more"]
            print(f"  {row['name']:32s} {z0:.3f} {c0:.3f} | {z1:.3f} {c1:.3f} "
                  f"({row['videos']} videos)")
        return 0
    if a.learning_curve:
        sizes = sorted({max(1, round(f * (len(clips) - 1))) for f in (0.25, 0.5, 0.75, 1.0)})
        print(f"opening r (regressor alone) on a video never fitted on, {len(clips)} videos, "
              f"{a.draws} random training sets per video and size:")
        for row in learning_curve(clips, driver, sizes, max(a.draws, 1), a.lam, measured):
            print(f"  {row['videos']:3d} training videos: r {row['r']:.3f} "
                  f"(sd {row['sd']:.3f} over the draws, {row['fits']} fits)")
        return 0
    model, figures = fit_regressor(clips, driver, a.lam, measured=measured)
    for k, v in figures.items():
        print(f"{k}: {v}")
    if a.dry_run:
        return 0
    from dubber.models.registry import resolve_weights_dir
    from dubber.mouth.driver import WEIGHTS_NAME
    from dubber.train.publish import publish

    folder = resolve_weights_dir(a.weights)
    names = ", ".join(v.stem for v in videos)
    trained_on = (f"{len(videos)} talking-head videos ({names}), "
                  f"{figures['frames']} frames; held out: {', '.join(a.hold_out)}; ridge lambda "
                  f"{a.lam:g}; audio offsets "
                  f"{'as the sync model measures them' if measured else 'cross-validated'}"
                  f"{'' if a.offsets == 'sync' else ' (--offsets fit)'}; "
                  "command: python -m dubber.mouth.fit")
    entry = publish(model, "mouth_driver", WEIGHTS_NAME, folder, trained_on, figures,
                    dtype="fp32")
    print(f"wrote {folder / entry.file} (sha256 {entry.sha256[:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
