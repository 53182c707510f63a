"""``dub batch``: a three-episode manifest on the shared clips, checked before anything runs,
resumed after SIGKILL to the same bytes, carrying on past a failed episode, and the same
through the Ray backend."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dubber.batch import BatchState
from dubber.media.probe import probe
from dubber.segments import parts_dir
from tests.helpers import CLIPS, SPEECH, make_clip, needs_media

THREE = [("ep01", "man_map_844_en.mp4", "hi_news_22s.wav"),
         ("ep02", "woman_glasses_524_en.mp4", "en_kimk_8s.mp3"),
         ("ep03", "profile_turn_224_en.mp4", "zh_read_4s.wav")]
QUICK = {"preset": "unittest", "passthrough": True, "segment-seconds": 1.0}


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(folder: Path, episodes: list[dict], defaults: dict | None = None,
                   name: str = "season.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump({"defaults": defaults or QUICK, "episodes": episodes}))
    return path


def three_episodes(extra: dict | None = None) -> list[dict]:
    return [{"name": n, "input": str(CLIPS / c), "audio": str(SPEECH / a),
             "output": f"out/{n}.mp4", **(extra or {})} for n, c, a in THREE]


def summary_of(r) -> dict:
    return json.loads(r.out)


@needs_media
def test_three_episodes_render_and_a_rerun_skips_them(dub, tmp_path):
    manifest = write_manifest(tmp_path, three_episodes())
    r = dub("batch", manifest, "-q")
    assert r.code == 0, r
    s = summary_of(r)
    assert (s["done"], s["failed"]) == (3, 0)
    for (name, clip, _), ep in zip(THREE, s["episodes"]):
        out = tmp_path / "out" / f"{name}.mp4"
        assert ep["status"] == "done" and probe(out).frame_count == probe(CLIPS / clip).frame_count
        assert ep["segments"]["rendered"] == ep["segments"]["count"] >= 4
    r = dub("batch", "status", manifest, "--json")
    assert [row["status"] for row in json.loads(r.out)] == ["done"] * 3
    before = {n: sha(tmp_path / "out" / f"{n}.mp4") for n, _, _ in THREE}
    r = dub("batch", manifest, "-q")  # done episodes are not rendered again
    assert r.code == 0 and [e["attempts"] for e in summary_of(r)["episodes"]] == [1, 1, 1]
    assert before == {n: sha(tmp_path / "out" / f"{n}.mp4") for n, _, _ in THREE}


@needs_media
def test_a_broken_entry_is_named_and_nothing_runs(dub, tmp_path):
    eps = three_episodes()
    eps[1]["crf"] = "high"
    eps[2]["audio"] = "missing.wav"
    eps[2]["colour"] = "red"
    manifest = write_manifest(tmp_path, eps)
    r = dub("batch", manifest)
    assert r.code == 2
    line = r.err.strip()
    assert line.count("\n") == 0 and line.startswith("dub: error: manifest season.yaml")
    assert 'episode "ep02": crf: must be an integer 0..51' in line
    assert 'episode "ep03": audio: missing.wav does not exist' in line
    assert 'episode "ep03": colour: not a dub option' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["season.yaml"]  # no state, no out


@needs_media
def test_a_failing_episode_does_not_stop_the_others(dub, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((CLIPS / THREE[1][1]).read_bytes()[:40000])  # truncated: cannot probe
    eps = three_episodes()
    eps[1]["input"] = str(broken)
    manifest = write_manifest(tmp_path, eps)
    r = dub("batch", manifest, "--workers", "2")
    assert r.code == 1
    s = summary_of(r)
    assert [e["status"] for e in s["episodes"]] == ["done", "failed", "done"]
    assert s["failed"] == 1 and "broken.mp4" in s["episodes"][1]["error"]
    assert "dub: ep02: failed:" in r.err
    assert (tmp_path / "out" / "ep01.mp4").exists() and (tmp_path / "out" / "ep03.mp4").exists()
    assert not (tmp_path / "out" / "ep02.mp4").exists()


@pytest.fixture(scope="module")
def long_clip(gen) -> Path:
    return make_clip(gen / "batch_6s.mp4", size="640x360", seconds=6)


def test_a_killed_batch_resumes_to_the_same_bytes(dub, long_clip, tone_3s, tmp_path):
    eps = [{"name": f"ep0{i}", "input": str(long_clip), "audio": str(tone_3s),
            "output": f"out/ep0{i}.mp4"} for i in (1, 2, 3)]
    defaults = {**QUICK, "segment-seconds": 0.4}
    ref = write_manifest(tmp_path / "ref", eps, defaults)
    assert dub("batch", ref, "-q").code == 0
    manifest = write_manifest(tmp_path / "run", eps, defaults)
    proc = subprocess.Popen([sys.executable, "-m", "dubber.cli_main", "batch", str(manifest),
                             "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = tmp_path / "run" / "out" / "ep02.mp4"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(parts_dir(second).glob("[0-9]*.nut"))) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the batch ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "run")], capture_output=True, text=True)
    assert left.stdout.strip() == ""  # no worker, no ffmpeg outlived the batch
    assert (tmp_path / "run" / "out" / "ep01.mp4").exists() and not second.exists()
    r = dub("batch", "status", manifest)
    line = next(x for x in r.out.splitlines() if x.startswith("ep02"))
    assert "interrupted" in line and "segments" in line  # its batch is gone; N/M segments
    r = dub("batch", manifest, "-q")
    assert r.code == 0, r
    for ep in summary_of(r)["episodes"]:
        name = ep["name"]
        assert sha(tmp_path / "run" / "out" / f"{name}.mp4") == sha(
            tmp_path / "ref" / "out" / f"{name}.mp4"), name
        # Counted in the state: every segment finished exactly once, over both runs.
        assert ep["segments"]["rendered"] == ep["segments"]["count"] == 19
    state = BatchState(tmp_path / "run" / "season.batch.sqlite")
    assert [state.row(n)["attempts"] for n in ("ep01", "ep02", "ep03")] == [1, 2, 1]
    state.close()


@needs_media
@pytest.mark.slow  # a local Ray takes ~10-15 s to start on two cores
def test_the_ray_backend_runs_the_same_manifest(dub, tmp_path):
    pytest.importorskip("ray")
    local = write_manifest(tmp_path / "local", three_episodes())
    assert dub("batch", local, "-q", "--workers", "2").code == 0
    on_ray = write_manifest(tmp_path / "ray", three_episodes())
    r = dub("batch", on_ray, "-q", "--backend", "ray", "--workers", "2")
    assert r.code == 0, r
    s = summary_of(r)
    assert s["backend"] == "ray" and s["done"] == 3
    for name, _, _ in THREE:
        assert sha(tmp_path / "ray" / "out" / f"{name}.mp4") == sha(
            tmp_path / "local" / "out" / f"{name}.mp4")
