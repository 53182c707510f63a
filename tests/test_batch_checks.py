"""``dub batch``: what the up-front manifest check refuses before any episode runs (exit 2,
one line, no state file, no input touched). Fast: nothing here renders, except the one
pass-through that shows a finished episode's output is not taken for a clash on a rerun."""

from __future__ import annotations

import json
import os

import pytest

from tests.test_batch import QUICK, sha, summary_of, write_manifest
from tests.test_cli_errors import one_line_error


def episode(name, src, audio, output, **extra) -> dict:
    return {"name": name, "input": str(src), "audio": str(audio), "output": str(output),
            **extra}


@pytest.fixture
def season(clip_320, tone_3s, tmp_path):
    """tmp_path with y's own input (victim.mp4) and dub track (track.mp4, an mp4 with
    audio: an output name may equal it)."""
    (tmp_path / "victim.mp4").write_bytes(clip_320.read_bytes())
    (tmp_path / "track.mp4").write_bytes(clip_320.read_bytes())
    return tmp_path


@pytest.mark.parametrize("target, what", [
    ("victim.mp4", "input"),
    ("./sub/../victim.mp4", "input"),
    ("link.mp4", "input"),  # a symlink to victim.mp4
    ("hard.mp4", "input"),  # a hard link to victim.mp4
    ("track.mp4", "audio"),
])
def test_an_output_over_another_episodes_input_or_audio_is_refused(dub, season, clip_320,
                                                                   tone_3s, target, what):
    (season / "sub").mkdir()
    (season / "link.mp4").symlink_to(season / "victim.mp4")
    os.link(season / "victim.mp4", season / "hard.mp4")
    before = {p.name: sha(p) for p in season.iterdir() if p.is_file()}
    manifest = write_manifest(season, [
        episode("x", clip_320, tone_3s, target, force=True),
        episode("y", "victim.mp4", "track.mp4", "out/y.mp4")])
    r = dub("batch", manifest, "-q")
    one_line_error(r, 2, 'episode "x": output: is episode "y"\'s ' + what)
    assert {p.name: sha(p) for p in season.iterdir() if p.is_file() and p.suffix != ".yaml"} \
        == before
    assert not (season / "season.batch.sqlite").exists() and not (season / "out").exists()


def test_an_output_over_its_own_audio_is_refused(dub, season, clip_320):
    before = sha(season / "track.mp4")
    manifest = write_manifest(season, [
        episode("x", clip_320, "track.mp4", "track.mp4", force=True)])
    one_line_error(dub("batch", manifest, "-q"), 2, 'episode "x": output: is its own audio')
    assert sha(season / "track.mp4") == before


def test_codec_mismatch_and_existing_output_are_refused_before_any_episode(dub, season,
                                                                           clip_320, tone_3s):
    (season / "out").mkdir()
    (season / "out" / "b.mp4").write_bytes(b"an older render")
    manifest = write_manifest(season, [
        episode("a", clip_320, tone_3s, "out/a.mp4"),  # fine: would run first
        episode("b", clip_320, tone_3s, "out/b.mp4"),  # exists, no force
        episode("c", clip_320, tone_3s, "out/c.mp4", codec="prores")])
    r = dub("batch", manifest, "-q")
    one_line_error(r, 2, 'episode "b": output:', "already exists", "force: true",
                   'episode "c": output: prores video cannot go in .mp4')
    assert sorted(p.name for p in (season / "out").iterdir()) == ["b.mp4"]  # a never ran
    assert not (season / "season.batch.sqlite").exists()


def test_a_finished_episodes_output_is_not_a_clash_on_the_next_run(dub, clip_320, tone_3s,
                                                                    tmp_path):
    manifest = write_manifest(tmp_path, [episode("a", clip_320, tone_3s, "out/a.mp4")],
                              {**QUICK, "segment-seconds": 0})
    assert dub("batch", manifest, "-q").code == 0
    stamp = sha(tmp_path / "out" / "a.mp4")
    r = dub("batch", manifest, "-q")  # done before: skipped, not "already exists"
    assert r.code == 0, r
    assert summary_of(r)["episodes"][0]["attempts"] == 1
    assert sha(tmp_path / "out" / "a.mp4") == stamp


def test_every_dub_option_is_a_manifest_key_or_refused_with_a_reason():
    from dubber import manifest as m
    from dubber.cli import cli

    keys = set(m._OPTIONS) | set(m._OTHER) | set(m._BATCH_WIDE) | m._EPISODE_KEYS
    for param in cli.commands["run"].params:
        for opt in (*param.opts, *getattr(param, "secondary_opts", ())):
            if opt.startswith("--"):
                assert opt[2:].replace("-", "_") in keys, opt


def test_no_check_check_and_report_are_taken_resume_is_refused_with_why(dub, clip_320,
                                                                         tone_3s, tmp_path):
    eps = [episode("a", clip_320, tone_3s, "out/a.mp4", **{"no-check": True}),
           episode("b", clip_320, tone_3s, "out/b.mp4", check=False),
           episode("c", clip_320, tone_3s, "out/c.mp4", report="out/c.sync.json")]
    manifest = write_manifest(tmp_path, eps, {**QUICK, "segment-seconds": 0})
    r = dub("batch", manifest)
    assert r.code == 0, r
    rows = summary_of(r)["episodes"]
    assert [e["sync"] for e in rows[:2]] == [None, None]
    # A report asks for the check even after a pass-through; a clip without a face cannot
    # be checked, which the line says and which fails nothing.
    assert rows[2]["sync"].startswith("sync: not checked") and "dub: c: done" in r.err
    bad = write_manifest(tmp_path / "bad", [
        episode("a", clip_320, tone_3s, "a.mp4", resume=True),
        episode("b", clip_320, tone_3s, "b.mp4", check=True, **{"no-check": True}),
        episode("c", clip_320, tone_3s, "c.mp4", report="c.mp4"),
        {"name": "d", "input": str(clip_320), "audio": str(tone_3s), "output": "d.mp4",
         "verbose": True}])
    r = dub("batch", bad)
    one_line_error(r, 2, 'episode "a": resume: not a manifest option: every episode',
                   'episode "b": check, no-check: contradict',
                   'episode "c": report: is its own output',
                   'episode "d": verbose: not a manifest option: give -v to dub batch')


def test_a_bad_language_tag_is_refused_up_front(dub, clip_320, tone_3s, tmp_path):
    manifest = write_manifest(tmp_path, [
        episode("a", clip_320, tone_3s, "out/a.mp4", **{"dub-language": "xx"}),
        episode("b", clip_320, tone_3s, "out/b.mov", **{"dub-language": "deu"}),
        episode("c", clip_320, tone_3s, "out/c.mov", **{"dub-language": "ger"})])
    r = dub("batch", manifest)
    one_line_error(r, 2, 'episode "a": dub_language: must be a lowercase ISO 639-2 code',
                   'episode "b": output: --dub-language \'deu\' cannot be stored in a .mov')
    assert 'episode "c"' not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["season.yaml"]


def test_status_tells_an_interrupted_batch_from_a_running_one(dub, clip_320, tone_3s,
                                                              tmp_path):
    import socket

    from dubber.batch import BatchState
    from dubber.manifest import load_manifest

    manifest = write_manifest(tmp_path, [episode("a", clip_320, tone_3s, "out/a.mp4"),
                                         episode("b", clip_320, tone_3s, "out/b.mp4")])
    state = BatchState(tmp_path / "season.batch.sqlite")
    state.sync(load_manifest(manifest).episodes)
    state.running("a")  # by this process, alive
    state.running("b")
    # b's batch is gone: this pid now names another process (another start time).
    state.db.execute("UPDATE episodes SET owner=? WHERE name='b'",
                     (f"{socket.gethostname()}:{os.getpid()}:0",))
    state.close()
    r = dub("batch", "status", manifest, "--json")
    assert r.code == 0, r
    assert [row["status"] for row in json.loads(r.out)] == ["running", "interrupted"]
