"""The render pass: decode in chunks -> stages -> encode + mux, in bounded memory.

Three threads overlap: the decoder fills chunks ahead (``media.queue_depth``), the calling
thread runs the stages, and the encoder thread feeds ffmpeg. Memory is bounded by the
chunk size and queue depths, never by the length of the film.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from dubber import segments
from dubber.chunk import Stage, run_stages
from dubber.config import Config
from dubber.errors import InputError, OutputError, UsageError
from dubber.files import check_replaceable, same_file
from dubber.media.audio import AudioTrack
from dubber.media.color import ColorSpec
from dubber.media.decode import read_chunks
from dubber.media.encode import DEFAULT_SUFFIX, MuxPlan, VideoWriter, container_for
from dubber.media.probe import VideoInfo, frame_times, probe
from dubber.stages.identity import identity

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RenderResult:
    output: Path
    frames: int  # frames written (equals the input's frame count)
    video_duration: float  # seconds
    dub_duration: float  # seconds of the dub track as given
    audio_action: str  # "none", "padded" or "cut": what the length policy did
    # Per segment of a resumable render: {"idx", "frames", "starts", "renders", "seconds"}
    # (renders: times it was finished, over this run and the killed ones it resumed).
    segments: tuple = ()


def default_output(input_path: Path, cfg: Config) -> Path:
    """``INPUT.dubbed.<ext>`` beside the input; the extension suits the codec."""
    return input_path.with_name(f"{input_path.stem}.dubbed{DEFAULT_SUFFIX[cfg.encode.codec]}")


def check_output(input_path: Path, output: Path, force: bool,
                 audio_path: Path | None = None, make_folder: bool = False) -> None:
    """Refuse outputs that would overwrite the input or the dub track (``audio_path``), an
    existing file without ``force``, or that cannot be written. With ``make_folder`` (a
    batch, which creates output folders) the output folder may be missing: its nearest
    existing parent must be writable. Raises UsageError / OutputError."""
    container_for(output)
    if same_file(output, input_path):
        raise UsageError(f"the output {output} is the input: choose another name with -o")
    if audio_path is not None and same_file(output, audio_path):
        raise UsageError(f"the output {output} is the dub track (--audio): choose another "
                         "name with -o")
    check_replaceable(output, force)
    folder = output.parent
    while make_folder and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"the output folder {folder} does not exist")
    # Try it: os.access says yes to root even on read-only mounts and pseudo-filesystems.
    try:
        fd, probe_file = tempfile.mkstemp(prefix=".dubber-write-test-", dir=folder)
    except OSError as exc:
        raise OutputError(f"the output folder {folder} is not writable "
                          f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe_file)


def length_policy(info: VideoInfo, dub_seconds: float, strict: bool) -> str:
    """Apply DESIGN's rule: the picture is sacred, the dub fits it.

    Returns "none", "padded" (the dub is shorter: silence is added) or "cut" (the dub is
    longer: the rest is dropped, with a warning). With ``strict``, any mismatch larger than
    one frame raises InputError instead.
    """
    video = float(info.duration)
    frame = float(info.frame_duration)
    diff = dub_seconds - video
    if abs(diff) <= frame / 2:
        return "none"
    if strict and abs(diff) > frame:
        raise InputError(
            f"the dub track is {dub_seconds:.3f} s but the picture is {video:.3f} s "
            f"({abs(diff):.3f} s {'longer' if diff > 0 else 'shorter'}); fix the dub or drop "
            f"--strict-length to {'cut' if diff > 0 else 'pad'} it")
    if diff > 0:
        log.warning("the dub track is %.3f s longer than the picture (%.3f s): cutting it",
                    diff, video)
        return "cut"
    log.info("the dub track is %.3f s shorter than the picture: padding it with silence",
             -diff)
    return "padded"


def render(
    input_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    output: str | os.PathLike | None,
    cfg: Config,
    stages: Sequence[Stage] = (identity,),
    models: object = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[VideoInfo], None] | None = None,
    setup: Callable[[VideoInfo], object] | None = None,
    resume: bool = False,
    keep_parts: bool | None = None,
    identity: dict | None = None,
    segments_only: Sequence[int] | None = None,
) -> RenderResult:
    """Dub one video: every frame through ``stages``, the dub track muxed in.

    Args:
        input_path: the picture.
        audio_path: the dub track (any file with an audio stream).
        output: destination; None = ``INPUT.dubbed.mp4`` beside the input.
        cfg: the run's configuration.
        stages: applied in order to every chunk.
        models: passed to every stage.
        force: replace an existing output.
        progress: called with the number of frames finished, after each chunk.
        on_start: called with the probed input before decoding starts.
        setup: called with the probed input once the inputs and output are checked (so a
            bad input is reported before, say, a missing weight); what it returns replaces
            ``models``.
        resume: keep the finished segments of an earlier, killed run (``dub --resume``);
            without it whatever such a run left is removed first.
        keep_parts: keep the finished segments when this run fails (default: ``resume``).
        identity: what else the pixels depend on (tracks file, weights), for resuming.
        segments_only: render just these segments and publish nothing (one of several
            processes sharing a title's segments; a later run with ``resume`` joins them).
            The result's ``frames`` is then -1.

    Raises:
        InputError, UsageError, OutputError: bad input or arguments (nothing is written).
        RunError: the run failed; the temporary output is removed.
    """
    input_path, audio_path = Path(input_path), Path(audio_path)
    # 1. Inputs and output: every check that can fail does so before any work.
    info = probe(input_path)
    out = Path(output) if output is not None else default_output(input_path, cfg)
    check_output(input_path, out, force, audio_path)
    log.info("input: %s", info.describe())
    with AudioTrack(audio_path, tmp_dir=None) as dub:
        action = length_policy(info, dub.duration, cfg.encode.strict_length)
        plan = MuxPlan.make(info, audio_path, dub.info.stream_index, out, cfg.encode)
        if setup is not None:
            models = setup(info)
        if on_start is not None:
            on_start(info)
        if resume and not segments.resumable(cfg):
            log.warning("%s renders in one pass: --resume has nothing to resume",
                        cfg.encode.codec if cfg.runtime.segment_seconds else "this run")
        if segments.resumable(cfg):  # 2-3. in segments, joined losslessly (resumable)
            written, seg_rows = _render_segmented(
                plan, info, cfg, stages, models, dub, progress, resume, keep_parts, identity,
                segments_only)
            if segments_only is not None:
                return RenderResult(out, -1, float(info.duration), dub.duration, action,
                                    seg_rows)
            if written != info.frame_count:
                raise InputError(f"{input_path} is truncated or corrupt: {written} of "
                                 f"{info.frame_count} frames could be decoded")
            return RenderResult(out, written, float(info.duration), dub.duration, action,
                                seg_rows)
        # 2. Decode -> stages -> encode, overlapped.
        with segments.OutputClaim(out, resume, keep=False), VideoWriter(plan) as writer:
            chunks = read_chunks(info, cfg.media.chunk_frames, analysis_scale=0.0, full=True,
                                 queue_depth=cfg.media.queue_depth,
                                 threads=cfg.media.decode_threads,
                                 chunk_megabytes=cfg.media.chunk_megabytes)
            with closing(chunks):
                color = ColorSpec.from_names(info.color.matrix, info.color.range, info.width,
                                             info.height)
                written = _run_chunks(chunks, stages, models, cfg, dub, color, writer,
                                      progress)
            if written != info.frame_count:
                raise InputError(f"{input_path} is truncated or corrupt: {written} of "
                                 f"{info.frame_count} frames could be decoded")
            # 3. Publish atomically.
            writer.finish()
    return RenderResult(out, written, float(info.duration), dub.duration, action)


def _run_chunks(chunks, stages, models, cfg, dub, color, writer, progress) -> int:
    written = 0
    for chunk in chunks:
        chunk.dub = dub
        chunk.color = color
        chunk = run_stages(chunk, models, cfg, stages)
        chunk.dub = None
        writer.write(chunk)
        written += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return written


def _render_segmented(plan, info, cfg, stages, models, dub, progress, resume, keep_parts,
                      identity, only) -> tuple[int, tuple]:
    """The chunk loop above, fed segment by segment (see :mod:`dubber.segments`)."""
    color = ColorSpec.from_names(info.color.matrix, info.color.range, info.width,
                                 info.height)
    keep = resume if keep_parts is None else keep_parts
    with segments.OutputClaim(plan.output, resume, keep, shared=only is not None) as claim:
        written = segments.render_segments(
            plan, info, cfg, claim,
            lambda chunks, writer: _run_chunks(chunks, stages, models, cfg, dub, color,
                                               writer, progress),
            lambda: segments.reset_state(stages, models), progress, identity,
            only=only, join=only is None)
        return written, tuple(claim.state.rows())


def set_cpu_threads(threads: int) -> int:
    """Set torch's intra-op CPU threads (0 = half the cores, at least 1); returns it."""
    import torch

    n = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(n)
    return n


def dub_video(
    input_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    output: str | os.PathLike | None,
    cfg: Config,
    weights_dir: str | os.PathLike | None = None,
    tracks_file: str | os.PathLike | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[VideoInfo], None] | None = None,
    analysis_progress: Callable[[int], None] | None = None,
    bank_progress: Callable[[int], None] | None = None,
    resume: bool = False,
    keep_parts: bool | None = None,
    adapt_tracks: Callable | None = None,
    pre_stages: Sequence[Stage] = (),
    segments_only: Sequence[int] | None = None,
    track_dubs: Mapping[int, object] | None = None,
) -> RenderResult:
    """The whole product on one title: analysis -> mouths -> encode.

    1. inputs and output are checked (:func:`render`);
    2. the models of ``cfg`` are loaded (a missing weight fails here, before any work);
    3. faces are analysed, or read from ``tracks_file`` (an edited ``dub inspect --json``);
    4. with ``mouth.renderer: bank``: the dubbed actors' mouth banks are built (cached) and
       the mouth plan made from the dub (:func:`dubber.mouth.plan.plan_run`);
    5. each chunk: selected faces looked up; the planned ones get the actor's own mouth
       (:class:`~dubber.stages.mouth.MouthStage`); the rest are cropped, encoded, generated
       from their own mel window, decoded, restored (GPEN, if enabled) and pasted back;
       encoded and muxed.

    With ``cfg.runtime.passthrough`` steps 2-5 are skipped and the picture is re-encoded
    unchanged. Arguments as in :func:`render`; ``weights_dir`` as ``--weights``;
    ``bank_progress`` is called with frames done while the mouth banks are built;
    ``adapt_tracks`` changes the analysis before the render (per-character stems choose
    their faces there), ``pre_stages`` run between the faces and the model stages, and
    ``track_dubs`` (track id -> its own dub, an audio path or
    :class:`~dubber.media.audio.AudioTrack`; filled by ``adapt_tracks`` at the latest)
    gives a face its own stem instead of ``audio_path``.
    """
    resumable = dict(resume=resume, keep_parts=keep_parts, segments_only=segments_only,
                     identity=segments.run_identity(tracks_file, weights_dir))
    if cfg.runtime.passthrough:
        return render(input_path, audio_path, output, cfg, force=force, progress=progress,
                      on_start=on_start, **resumable)
    from dubber.faces.analyze import tracks_for_run
    from dubber.faces.select import FacesStage
    from dubber.models.build import build_models
    from dubber.mouth.plan import dubbed_frames, plan_run
    from dubber.mouth.target import DubMouths, cue_table
    from dubber.stages.cues import CueStage
    from dubber.stages.model_chain import MODEL_STAGES
    from dubber.stages.mouth import MouthStage

    faces = FacesStage()
    mouths = MouthStage({}, {}) if cfg.mouth.renderer == "bank" else None
    cues = CueStage() if cfg.models.generator.told_mouth_track else None

    def setup(info: VideoInfo):
        # Cheap input checks first (an edited tracks file for another video), then the
        # weights, and only then the analysis, which can take minutes on a film.
        if tracks_file:
            faces.tracks = tracks_for_run(input_path, cfg, tracks_file, info=info)
        set_cpu_threads(cfg.runtime.threads)
        models = build_models(cfg, weights_dir)
        if not tracks_file:
            faces.tracks = tracks_for_run(input_path, cfg, progress=analysis_progress,
                                          info=info)
        if adapt_tracks is not None:
            faces.tracks = adapt_tracks(faces.tracks)
        dub_mouths = None
        if mouths is not None or cues is not None:
            dub_mouths = DubMouths(audio_path, frame_times(info), weights_dir, track_dubs)
        if mouths is not None:
            mouths.plan, mouths.banks = plan_run(info, faces.tracks, audio_path, cfg,
                                                 progress=bank_progress,
                                                 weights_dir=weights_dir,
                                                 track_dubs=track_dubs, mouths=dub_mouths)
            faces.known = mouths.known_points  # the banks have every dubbed face's mesh
        if cues is not None:  # the generator is told the driver's mouth of each face
            cues.table = cue_table(dub_mouths, faces.tracks, dubbed_frames(faces.tracks))
        return models

    try:
        stages = (faces, *pre_stages, *([mouths] if mouths is not None else []),
                  *([cues] if cues is not None else []), *MODEL_STAGES)
        result = render(input_path, audio_path, output, cfg, stages=stages, force=force,
                        progress=progress, on_start=on_start, setup=setup, **resumable)
        if mouths is not None and mouths.hidden:  # it shows in the sync check: say why
            log.warning("%d dubbed face(s) kept their own mouth: a hand was before the lips "
                        "(mouth.keep_hands)", mouths.hidden)
        return result
    finally:
        faces.close()
