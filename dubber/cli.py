"""The ``dub`` command line. Thin: parse, call the library, print.

``dub INPUT --audio DUB [-o OUT]`` is the main command (``dub run`` spelled out); other
commands are subcommands. Every error the user can act on is one line
``dub: error: ...`` with exit code 2 (bad usage or input) or 1 (a failed run); nothing is
left behind and the input is never touched.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import click
from tqdm import tqdm

from dubber import __version__
from dubber.config import DEFAULT_PRESET, VIDEO_CODECS, load_config
from dubber.errors import DubberError, Interrupted

log = logging.getLogger("dubber")


class _DefaultGroup(click.Group):
    """A group whose first argument, when it is not a command, goes to ``run``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h",
                                                                       "--version"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx, formatter):
        formatter.write_usage("dub", "INPUT --audio DUB [-o OUT] [OPTIONS]\n"
                                     "       dub COMMAND [ARGS]...")


class _Finite(click.FloatRange):
    """A float option within a range that is also a number: ``nan`` and ``inf`` pass
    click's FloatRange (its comparisons are all false for NaN) and then fail deep inside."""

    def convert(self, value, param, ctx):
        out = super().convert(value, param, ctx)
        if not math.isfinite(out):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return out


class _TqdmHandler(logging.Handler):
    """Log lines as ``dub: warning: ...`` that do not tear the progress bar."""

    def emit(self, record):
        level = record.levelname.lower()
        tqdm.write(f"dub: {level}: {record.getMessage()}", file=sys.stderr)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbose, 1)]
    if verbose >= 2:
        level = logging.DEBUG
    root = logging.getLogger("dubber")
    root.handlers[:] = [_TqdmHandler()]
    root.setLevel(level)
    root.propagate = False


_verbosity = click.option("-v", "--verbose", count=True, help="More detail (-vv: debug).")
_quiet = click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar.")
_face_option = click.option(
    "--face", metavar="WHO",
    help="Faces to re-render: speaker (default: whoever's lips follow the original audio), "
         "largest, all, or a track id from `dub inspect`.")
_tracks_option = click.option(
    "--tracks", "tracks_file", metavar="FILE", type=click.Path(dir_okay=False),
    help="Use this (edited) tracks file instead of analysing INPUT (`dub inspect --json`).")


class _AnalysisBar:
    """Progress of the analysis pass: called with the frames done so far; close() after."""

    def __init__(self, quiet: bool, desc: str = "analysing faces") -> None:
        self._quiet = quiet
        self._desc = desc
        self._bar = None  # made on the first call: no bar when no analysis runs

    def __call__(self, done: int) -> None:
        if self._quiet:
            return
        if self._bar is None:
            self._bar = tqdm(unit="frame", desc=self._desc, dynamic_ncols=True,
                             file=sys.stderr, leave=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _tracks(input_path, cfg, tracks_file, quiet):
    """The analysis (cached) or the edited tracks file, with a progress bar."""
    from dubber.faces.analyze import tracks_for_run

    bar = _AnalysisBar(quiet)
    try:
        return tracks_for_run(input_path, cfg, tracks_file, progress=bar)
    finally:
        bar.close()


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dub")
def cli() -> None:
    """Re-render the on-screen speaker's mouth to match a dubbed dialogue track.

    \b
    dub INPUT --audio DUB [-o OUT]    dub one title
    dub probe INPUT                   what dubber sees in a video
    dub inspect INPUT [--sheet S.png] shots, faces and speakers found in a video
    dub check-sync VIDEO [--audio A]  is the speaker on screen in sync with the audio?
    dub weights list|verify|describe  trained weights and the models of a preset
    dub verify-watermark VIDEO        did dubber touch this video? (its face watermark)
    dub prepare VIDEO... -o CORPUS    a training corpus from talking-face videos
    dub train MODEL --corpus CORPUS   train a model; the weights land in weights/
    dub mouth-shapes AUDIO [--fps F]  the mouth shape of every frame, from speech
    dub batch MANIFEST                every episode of a season (dub batch status MANIFEST)
    """


@cli.command("run")
@click.argument("input_path", metavar="INPUT")
@click.option("-a", "--audio", "audio_path", required=True, metavar="DUB",
              help="The dubbed dialogue track (wav, flac, mp3, or any file with audio).")
@click.option("-o", "--output", metavar="OUT",
              help="Output file (.mp4, .mov, .mkv). Default: INPUT.dubbed.mp4 beside INPUT.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Named configuration from presets/, or a YAML file.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the preset's).")
@click.option("--passthrough", is_flag=True, default=None,
              help="Change no picture: re-encode it unchanged with the dub track muxed in.")
@click.option("--chunk-frames", type=click.IntRange(min=1),
              help="Frames decoded and processed together; bounds memory.")
@click.option("--codec", type=click.Choice(VIDEO_CODECS), help="Video codec of OUT.")
@click.option("--crf", type=click.IntRange(0, 51), help="x264/x265 quality (lower is better).")
@click.option("--speed", metavar="PRESET",
              help="x264/x265 speed preset (ultrafast ... veryslow).")
@click.option("--keep-original-audio", is_flag=True, default=None,
              help="Keep the input's audio as a second track labelled Original.")
@click.option("--dub-language", metavar="LANG", help="ISO 639-2 tag for the dub track (hin).")
@click.option("--strict-length", is_flag=True, default=None,
              help="Fail if the dub and the picture differ by more than one frame.")
@click.option("--weights", "weights_dir", metavar="DIR",
              help="Folder of trained weights (default: $DUBBER_WEIGHTS, else weights/).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="End with `dub check-sync` of OUT against DUB (one line); not after "
                   "--passthrough, which changes no mouth (unless --report asks for it).")
@click.option("--report", metavar="FILE.json", type=click.Path(dir_okay=False),
              help="Write the full sync check of OUT to FILE.json.")
@click.option("--resume", is_flag=True,
              help="Continue a killed run of the same command from its first missing "
                   "segment (and keep the finished segments if this run stops too).")
@click.option("--segment-seconds", type=_Finite(min=0),
              help="Seconds per resumable segment (default 10; 0: one encode, no resume).")
@_face_option
@_tracks_option
@_verbosity
@_quiet
def run_command(input_path, audio_path, output, force, preset, device, passthrough,
                chunk_frames, codec, crf, speed, keep_original_audio, dub_language,
                strict_length, weights_dir, check, report, resume, segment_seconds, face,
                tracks_file, verbose, quiet):
    """Dub INPUT with the DUB track: the whole picture is re-encoded, frame for frame."""
    from dubber.pipeline import dub_video

    _setup_logging(verbose, quiet)
    cfg = load_config(preset, {
        "media": {"chunk_frames": chunk_frames},
        "encode": {"codec": codec, "crf": crf, "speed": speed, "keep_original_audio": keep_original_audio,
                   "dub_language": dub_language, "strict_length": strict_length},
        "runtime": {"device": device, "passthrough": passthrough,
                    "segment_seconds": segment_seconds},
        "faces": {"face": face},
    })
    bar: list[tqdm] = []
    analysis = _AnalysisBar(quiet)
    banking = _AnalysisBar(quiet, "mouth bank")

    def on_start(info):
        analysis.close()
        banking.close()
        bar.append(tqdm(total=info.frame_count, unit="frame", desc=Path(input_path).name,
                        disable=quiet, dynamic_ncols=True, file=sys.stderr))

    try:
        result = dub_video(input_path, audio_path, output, cfg, weights_dir=weights_dir,
                           tracks_file=tracks_file, force=force,
                           progress=lambda n: bar[0].update(n), on_start=on_start,
                           analysis_progress=analysis, bank_progress=banking, resume=resume)
    finally:
        analysis.close()
        banking.close()
        if bar:
            bar[0].close()
    if not quiet:
        note = {"padded": ", dub padded with silence", "cut": ", dub cut to the picture",
                "none": ""}[result.audio_action]
        click.echo(f"wrote {result.output} ({result.frames} frames, "
                   f"{result.video_duration:.3f} s{note})")
    from dubber.sync.check import check_wanted

    if check_wanted(check, report, cfg):  # (`dub check-sync` checks a pass-through)
        _check_output(result.output, audio_path, cfg, weights_dir, report, quiet)


def _check_output(output, audio_path, cfg, weights_dir, report_path, quiet) -> None:
    """The sync check that ends every dub: one line; the report to ``report_path``."""
    from dubber.sync.check import check_line

    bar = _AnalysisBar(quiet)
    try:
        line = check_line(output, audio_path, cfg, weights_dir, report_path, progress=bar)
    except KeyboardInterrupt:  # the output is complete: say so, not "no output"
        raise Interrupted(f"interrupted during the sync check; {output} was written, "
                          "not checked") from None
    finally:
        bar.close()
    if not quiet:
        click.echo(line)


class _BatchGroup(click.Group):
    """``dub batch MANIFEST`` runs it; ``dub batch status MANIFEST`` reports."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


_state_option = click.option(
    "--state", metavar="PATH", help="Job state file or folder (default: MANIFEST.batch.sqlite "
                                    "beside the manifest).")


@cli.group("batch", cls=_BatchGroup)
def batch_group() -> None:
    """Dub a season: every episode of a YAML manifest, resumably.

    \b
    dub batch MANIFEST [--workers N] [--backend local|ray] [--address ADDR]
    dub batch status MANIFEST [--json]
    """


@batch_group.command("run")
@click.argument("manifest_path", metavar="MANIFEST")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Episodes rendered at the same time.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Worker processes here, or Ray tasks.")
@click.option("--address", metavar="ADDR", help="An existing Ray cluster (with --backend ray).")
@_state_option
@_verbosity
@_quiet
def batch_run(manifest_path, workers, backend, address, state, verbose, quiet):
    """Render every episode of MANIFEST not yet done; print a JSON summary."""
    from dubber.batch import done_episodes, run_batch, state_path
    from dubber.manifest import load_manifest

    _setup_logging(verbose, quiet)
    if address and backend != "ray":
        raise click.UsageError("--address needs --backend ray")
    # Outputs of episodes already done are kept (skipped), not checked as if to be written.
    done = done_episodes(state_path(Path(manifest_path), state, create=False))
    manifest = load_manifest(manifest_path, done=done)

    def on_result(res):
        if quiet:
            return
        what = (f"done in {res['seconds']:.1f} s" if res["ok"]
                else f"failed: {res['error']}")
        if res.get("sync"):
            what += f"; {res['sync']}"
        click.echo(f"dub: {res['name']}: {what}", err=True)

    summary = run_batch(manifest, state_path(manifest.path, state), workers, backend, address,
                        on_result=on_result)
    click.echo(json.dumps(summary.to_json(), indent=2))
    return 1 if summary.failed else 0


@batch_group.command("status")
@click.argument("manifest_path", metavar="MANIFEST")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@_state_option
def batch_status_command(manifest_path, as_json, state):
    """Where each episode of MANIFEST stands."""
    from dubber.batch import batch_status, state_path
    from dubber.manifest import load_manifest

    manifest = load_manifest(manifest_path, check_files=False)
    rows = batch_status(manifest, state_path(manifest.path, state))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        line = f"{r['name']:<16} {r['status']:<8}"
        if r.get("progress"):
            p = r["progress"]
            line += f" {p['segments_done']}/{p['segments']} segments"
        if r["seconds"] is not None:
            line += f" {r['seconds']:.1f} s"
        if r["error"]:
            line += f"  {r['error']}"
        click.echo(line)


@cli.command("inspect")
@click.argument("input_path", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Print the tracks file (JSON) instead.")
@click.option("--sheet", metavar="OUT.png", type=click.Path(dir_okay=False),
              help="Write a contact sheet: sample frames with boxes, ids and speaker marks, "
                   "and lip aperture against the sync score with the audio per track.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Named configuration from presets/, or a YAML file.")
@_face_option
@_tracks_option
@_verbosity
@_quiet
def inspect_command(input_path, as_json, sheet, preset, face, tracks_file, verbose, quiet):
    """Shots, face tracks and speakers found in INPUT (analysed once, then cached)."""
    from dubber.faces.analyze import open_original_audio
    from dubber.faces.inspect import contact_sheet, format_table

    _setup_logging(verbose, quiet)
    cfg = load_config(preset, {"faces": {"face": face}})
    tracks = _tracks(input_path, cfg, tracks_file, quiet)
    if sheet:
        audio = open_original_audio(input_path)
        try:
            contact_sheet(input_path, tracks, sheet, audio)
        finally:
            if audio is not None:
                audio.close()
    if as_json:
        click.echo(json.dumps(tracks.to_json()))
    else:
        click.echo(format_table(tracks))
        if sheet:
            click.echo(f"wrote {sheet}")


@cli.command("verify-watermark")
@click.argument("video", metavar="VIDEO")
@click.option("--payload", metavar="HEX",
              help="The 32-bit payload to look for, 8 hex digits (default: the preset's "
                   "watermark.payload).")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Read every Nth frame only (faster on a long film).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Named configuration from presets/, or a YAML file.")
@_verbosity
@_quiet
def verify_watermark_command(video, payload, every, as_json, preset, verbose, quiet):
    """Did dubber touch VIDEO? Reads the watermark in every face of every frame.

    Exit 0: a match (at least half of the frames with a face carry the payload);
    1: no match; 2: bad input.
    """
    from dubber.verify import format_verdict, verify_video

    _setup_logging(verbose, quiet)
    cfg = load_config(preset)
    bar = _AnalysisBar(quiet or as_json, "reading watermarks")
    try:
        verdict = verify_video(video, cfg, payload, progress=bar, every=every)
    finally:
        bar.close()
    click.echo(json.dumps(verdict.to_dict()) if as_json else format_verdict(verdict))
    return 0 if verdict.match else 1


@cli.command("check-sync")
@click.argument("input_path", metavar="VIDEO")
@click.option("-a", "--audio", "audio_path", metavar="AUDIO",
              help="Check against this audio (any file with an audio stream) instead of "
                   "VIDEO's own.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--sheet", metavar="OUT.png", type=click.Path(dir_okay=False),
              help="Write a chart: per segment, offset and confidence of the speaker.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Named configuration from presets/, or a YAML file.")
@click.option("--weights", "weights_dir", metavar="DIR",
              help="Folder of trained weights (default: $DUBBER_WEIGHTS, else weights/).")
@_verbosity
@_quiet
def check_sync_command(input_path, audio_path, as_json, sheet, preset, weights_dir, verbose,
                       quiet):
    """Is the speaker on screen in sync with the audio? Per segment (shot): speaker track,
    offset (frames, ms), confidence, verdict; then an overall verdict. Exit 0 in sync,
    1 out of sync (or no speech), 2 bad input."""
    from dubber.sync.check import check_sync

    _setup_logging(verbose, quiet)
    cfg = load_config(preset)
    bar = _AnalysisBar(quiet)
    try:
        report = check_sync(input_path, audio_path, cfg, weights_dir, progress=bar)
    finally:
        bar.close()
    if sheet:
        from dubber.sync.sheet import sync_sheet

        sync_sheet(report, sheet)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        for seg in report.segments:
            who = "-" if seg.track is None else f"track {seg.track}"
            if seg.offset_frames is None:
                figs = ""
            else:
                figs = (f"offset {seg.offset_frames:+d} frames ({seg.offset_ms:+.0f} ms), "
                        f"confidence {seg.confidence:.3f} (sharpness {seg.sharpness:.1f}), "
                        f"distance {seg.distance:.3f}: ")
            click.echo(f"shot {seg.shot} frames {seg.start}-{seg.end}: {who}, {figs}"
                       f"{seg.verdict}")
        click.echo(report.line())
        if sheet:
            click.echo(f"wrote {sheet}")
    return report.exit_code


@cli.command("probe")
@click.argument("input_path", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Print the full description as JSON.")
def probe_command(input_path, as_json):
    """Describe a video as dubber sees it: size, rate, format, colour, streams."""
    from dubber.media.probe import probe

    info = probe(input_path)
    if as_json:
        click.echo(json.dumps(asdict(info), default=_jsonable, indent=2))
    else:
        click.echo(f"{info.path}: {info.describe()}")


@cli.command("mouth-shapes")
@click.argument("audio_path", metavar="AUDIO")
@click.option("--fps", type=_Finite(min=0, min_open=True, max=1000),
              help="Frames per second of the timeline (default 25).")
@click.option("--video", "video_path", metavar="V",
              help="Use this video's own frame times (any rate, variable included).")
@click.option("--format", "fmt", type=click.Choice(["tsv", "json"]), default="tsv",
              show_default=True, help="Output format.")
@click.option("-o", "--output", metavar="FILE", help="Write here instead of to stdout.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--weights", "weights_dir", metavar="DIR",
              help="Folder with mouth-driver.safetensors (default: $DUBBER_WEIGHTS, else "
                   "the repository's weights/).")
@_verbosity
@_quiet
def mouth_shapes_command(audio_path, fps, video_path, fmt, output, force, weights_dir, verbose,
                         quiet):
    """The mouth track of AUDIO, frame by frame: viseme (Rhubarb's A-H, X), opening, width,
    rounding (face-mesh units), speech flag and confidence. Any language."""
    import numpy as np

    from dubber.errors import UsageError
    from dubber.media.audio import load_audio
    from dubber.mouth.driver import MouthDriver
    from dubber.mouth.export import check_track_output, save_track, write_track

    _setup_logging(verbose, quiet)
    if fps and video_path:
        raise UsageError("give --fps or --video, not both")
    if output:
        check_track_output(output, (audio_path, video_path), force)
    samples = load_audio(audio_path)
    if video_path:
        from dubber.mouth.truth import video_frame_times

        times = video_frame_times(video_path)
    else:
        rate = fps or 25.0
        times = np.arange(int(np.ceil(len(samples) / 16000 * rate - 1e-9))) / rate
    track = MouthDriver(weights_dir).track(samples, times)
    if output:
        save_track(track, output, fmt, str(audio_path))
    else:
        write_track(track, sys.stdout, fmt, str(audio_path))


@cli.group("weights")
def weights_group() -> None:
    """Trained weights: list them, verify their checksums, describe a preset's models."""


_weights_dir = click.option(
    "--weights", "weights_dir", metavar="DIR",
    help="Weights folder (default: $DUBBER_WEIGHTS, else the repository's weights/).")


@weights_group.command("list")
@_weights_dir
def weights_list(weights_dir):
    """The weights in the manifest and whether their files are present."""
    from dubber.weights_cli import list_weights

    click.echo(list_weights(weights_dir))


@weights_group.command("verify")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@_weights_dir
@click.option("--strict", is_flag=True, help="A missing file is a failure too.")
def weights_verify(names, weights_dir, strict):
    """Check each weight file's sha256, format and dimensions against the manifest."""
    from dubber.errors import WeightsError
    from dubber.weights_cli import verify_weights

    report = verify_weights(weights_dir, list(names) or None, strict=strict)
    click.echo(report.text)
    if not report.ok:
        raise WeightsError("some weights failed verification (see above)")


@weights_group.command("describe")
@click.argument("preset")
def weights_describe(preset):
    """Each model of PRESET with its weights, dimensions and parameter count."""
    from dubber.weights_cli import describe_preset

    click.echo(describe_preset(preset))


@cli.command("prepare")
@click.argument("videos", nargs=-1, required=True, metavar="VIDEO...")
@click.option("-o", "--output", "out", required=True, metavar="CORPUS",
              help="Corpus folder (created; an unfinished one is resumed).")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Crop size, crop margin and face analysis settings come from this preset.")
@click.option("--size", type=click.IntRange(min=16),
              help="Side of the stored crops (default: the preset's Face-VQGAN resolution).")
@click.option("--min-frames", type=click.IntRange(min=1), default=30, show_default=True,
              help="Shortest single-speaker segment kept, in 25 fps frames.")
@click.option("--val-fraction", type=_Finite(0, 0.9), default=0.15, show_default=True,
              help="Share of the videos held back for validation.")
@click.option("--max-seconds", type=_Finite(min=0), default=0.0,
              help="Use only the first this many seconds of each video (0: all).")
@_verbosity
@_quiet
def prepare_command(videos, out, preset, size, min_frames, val_fraction, max_seconds, verbose,
                    quiet):
    """Make a training corpus from talking-face VIDEOs: 25 fps, single-speaker segments in
    sync with their audio, face crops, masked crops, 16 kHz audio and mel, a train/val split."""
    from dubber.train.prepare import PrepareOptions, prepare

    _setup_logging(verbose, quiet)
    cfg = load_config(preset)
    opts = PrepareOptions(crop_size=size or cfg.models.face_vqgan.resolution,
                          min_frames=min_frames, val_fraction=val_fraction,
                          max_seconds=max_seconds)
    bar: list[tqdm] = []

    def progress(name, n):
        if not bar:
            bar.append(tqdm(unit="frame", disable=quiet, dynamic_ncols=True, file=sys.stderr))
        bar[0].set_description(name, refresh=False)
        bar[0].update(n)

    try:
        manifest = prepare(videos, out, cfg, opts, progress=progress)
    finally:
        if bar:
            bar[0].close()
    c = manifest.counts()
    click.echo(f"wrote {Path(out) / 'corpus.json'}: train {c['train']['segments']} segments, "
               f"{c['train']['frames']} frames ({c['train']['seconds']:.1f} s); val "
               f"{c['val']['segments']} segments, {c['val']['frames']} frames "
               f"({c['val']['seconds']:.1f} s)")
    if manifest.frame_accounting:
        from dubber.train.prepare import describe_accounting

        click.echo(describe_accounting(manifest.frame_accounting))


@cli.command("train")
@click.argument("model", type=click.Choice(["face-vqgan", "pose-vqgan", "sync-expert",
                                            "generator", "gpen", "sync-model"]))
@click.option("--corpus", "corpus_dir", required=True, metavar="CORPUS",
              help="A folder made by `dub prepare` (sync-model: a folder of videos).")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Model sizes and the weights' names come from this preset.")
@click.option("--weights", "weights_dir", metavar="DIR",
              help="Read frozen models from and write the result to DIR "
                   "(default: $DUBBER_WEIGHTS, else the repository's weights/).")
@click.option("--run-dir", metavar="DIR",
              help="Checkpoints and metrics.csv (default: CORPUS/runs/<weights name>).")
@click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
@click.option("--steps", type=click.IntRange(min=1), help="Optimisation steps in all.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Samples per step.")
@click.option("--lr", type=_Finite(min=0, min_open=True), help="Learning rate.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Steps between checkpoints.")
@click.option("--val-every", type=click.IntRange(min=0),
              help="Steps per epoch (validation); 0: one pass over the train frames.")
@click.option("--max-minutes", type=_Finite(min=0),
              help="Stop (checkpoint, validate, publish) after this many minutes.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the preset's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any other setting of the trainer (e.g. disc_start=500); repeatable.")
@click.option("--dtype", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
              help="Precision of the published weights file.")
@click.option("--no-publish", is_flag=True, help="Train and checkpoint only; write no weights.")
@_verbosity
@_quiet
def train_command(model, corpus_dir, preset, weights_dir, run_dir, resume, steps, batch_size, lr,
                  checkpoint_every, val_every, max_minutes, device, sets, dtype, no_publish,
                  verbose, quiet):
    """Train MODEL on a prepared corpus; the result lands in the weights folder with its
    manifest entry (sha256, what it was trained on, validation figures)."""
    from dubber.errors import UsageError
    from dubber.train.train import train

    _setup_logging(verbose, quiet)
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr,
                "checkpoint_every": checkpoint_every, "val_every": val_every,
                "max_minutes": max_minutes}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        settings[key.strip()] = value.strip()
    cfg = load_config(preset, {"runtime": {"device": device}})
    bar: list[tqdm] = []

    def progress(step, total, losses):
        if not bar:
            bar.append(tqdm(total=total, initial=step - 1, unit="step", desc=f"train {model}",
                            disable=quiet, dynamic_ncols=True, file=sys.stderr))
        bar[0].update(1)
        bar[0].set_postfix(loss=f"{losses['loss']:.4f}", refresh=False)

    flags = [f"--{k.replace('_', '-')} {v}" for k, v in settings.items()
             if v is not None and k in ("steps", "batch_size", "lr", "checkpoint_every",
                                        "val_every", "max_minutes")]
    flags += [f"--set {item}" for item in sets]
    command = " ".join([f"dub train {model} --corpus {Path(corpus_dir).name} --preset {preset}",
                        *flags])
    if model == "sync-model":
        return _train_sync_model(corpus_dir, cfg, settings, weights_dir, no_publish, dtype,
                                 command, progress, bar)
    try:
        outcome = train(model, corpus_dir, cfg, settings, weights_dir=weights_dir,
                        run_dir=run_dir, resume=resume, publish=not no_publish, dtype=dtype,
                        command=command, progress=progress)
    finally:
        if bar:
            bar[0].close()
    r = outcome.result
    figures = ", ".join(f"{k} {v:.4g}" for k, v in r.figures.items())
    click.echo(f"{model}: {r.steps} steps, loss {r.first_loss:.4f} -> {r.last_loss:.4f}; "
               f"validation: {figures}")
    if outcome.entry is not None:
        click.echo(f"wrote {outcome.weights_dir / outcome.entry.file} "
                   f"(sha256 {outcome.entry.sha256[:12]}...) and its manifest entry")


def _train_sync_model(corpus_dir, cfg, settings, weights_dir, no_publish, dtype, command,
                      progress, bar):
    from dubber.sync.train import train_sync_model

    try:
        report, entry, wdir = train_sync_model(corpus_dir, cfg, settings, weights_dir,
                                               publish=not no_publish, dtype=dtype,
                                               command=command, progress=progress)
    finally:
        if bar:
            bar[0].close()
    figures = ", ".join(f"{k} {v:.4g}" for k, v in report.val.items())
    click.echo(f"sync-model: {report.steps} steps in {report.seconds / 60:.1f} min, "
               f"loss {report.last_loss:.4f}; validation: {figures}")
    if entry is not None:
        click.echo(f"wrote {wdir / entry.file} (sha256 {entry.sha256[:12]}...) "
                   "and its manifest entry")
    return 0


def _jsonable(value):
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dub`` console script; returns (and exits with) the exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = [Interrupted.exit_code]  # until the command has one
    failure = None
    try:
        result = cli.main(args=argv, prog_name="dub", standalone_mode=False)
        code[0] = result if isinstance(result, int) else 0
    except (Exception, KeyboardInterrupt) as exc:
        failure = exc
    if argv is None:  # the process's own command, not a caller's
        _leave_on_signal(code)
    if failure is not None:
        code[0] = _failed(failure)
    if argv is None:
        sys.exit(code[0])
    return code[0]


def _failed(exc: BaseException) -> int:
    """Say in one line why the command failed; its exit code."""
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        click.echo(f"dub: error: {exc.format_message()}", err=True)
        return exc.exit_code  # 2 for usage errors
    if isinstance(exc, (KeyboardInterrupt, click.exceptions.Abort)):
        return _say_interrupted()
    if isinstance(exc, DubberError):
        click.echo(f"dub: error: {exc}", err=True)
        return exc.exit_code
    # a bug: say so in one line, the traceback with -vv
    if _interrupted(exc):  # an interrupt a library wrapped (during an import: ImportError)
        return _say_interrupted()
    if logging.getLogger("dubber").isEnabledFor(logging.DEBUG):
        raise exc
    click.echo(f"dub: error: internal error ({type(exc).__name__}: {exc}); "
               "run again with -vv for the traceback and report it", err=True)
    return 1


def _leave_on_signal(code: list[int]) -> None:
    """Once the command's work is over, Ctrl-C or SIGTERM ends the process at once with
    ``code[0]`` (what the command came to, or 130 while its error is still being said),
    instead of raising into Python's shutdown, which prints "Exception ignored" and a
    traceback."""
    def leave(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more can be said
                pass
        os._exit(code[0])

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, leave)


def _say_interrupted() -> int:
    err = Interrupted("interrupted; no output was written")
    click.echo(f"dub: error: {err}", err=True)
    return err.exit_code


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by an interrupt (Ctrl-C or SIGTERM) somewhere down its
    chain of causes."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
