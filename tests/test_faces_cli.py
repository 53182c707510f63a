"""``dub inspect`` and the --face / --tracks options, through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from dubber.cli import main
from tests import faces_media as fm


@pytest.fixture(scope="module")
def inspected(tmp_path_factory):
    """``dub inspect CLIP --json --sheet S.png`` once: (stdout, sheet path, cache folder)."""
    folder = tmp_path_factory.mktemp("faces_cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("DUBBER_CACHE", str(folder / "cache"))
    sheet = folder / "sheet.png"
    yield folder, sheet, mp
    mp.undo()


def test_inspect_prints_the_tracks_json_and_writes_a_contact_sheet(inspected, capfd,
                                                                  monkeypatch):
    folder, sheet, _ = inspected
    mp = monkeypatch
    src = fm.clip("woman_glasses_524_en.mp4")
    assert main(["inspect", str(src), "--json", "--sheet", str(sheet), "-q"]) == 0
    out = capfd.readouterr().out
    data = json.loads(out)
    assert data["schema"] == "dubber.tracks/1"
    assert len(data["tracks"]) == 1 and data["shots"][0]["selected_track"] == 0
    t = data["tracks"][0]
    assert len(t["boxes"]) == t["last"] - t["first"] + 1 == data["video"]["frame_count"]
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sheet.stat().st_size > 20_000
    (folder / "tracks.json").write_text(out)
    # the analysis was cached: the table comes back without analysing again
    assert list((folder / "cache" / "tracks").glob("*.json"))

    def no_second_analysis(*args, **kwargs):
        raise AssertionError("analysed again instead of using the cache")

    mp.setattr("dubber.faces.analyze.analyze_chunks", no_second_analysis)
    assert main(["inspect", str(src)]) == 0
    table = capfd.readouterr().out
    assert "speaking windows" in table and "track" in table


def test_edited_tracks_file_and_face_choice_are_used(inspected, capfd):
    folder, _, _ = inspected
    src = fm.clip("woman_glasses_524_en.mp4")
    data = json.loads((folder / "tracks.json").read_text())
    data["shots"][0]["selected_track"] = None
    data["shots"][0]["windows"] = []
    edited = folder / "edited.json"
    edited.write_text(json.dumps(data))
    assert main(["inspect", str(src), "--tracks", str(edited), "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["shots"][0]["selected_track"] is None
    assert main(["inspect", str(src), "--tracks", str(edited), "--face", "largest",
                 "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["shots"][0]["selected_track"] == 0


def test_a_tracks_file_for_another_video_or_a_bad_face_is_refused(inspected, capfd):
    folder, _, _ = inspected
    other = fm.clip("man_map_844_en.mp4")
    assert main(["inspect", str(other), "--tracks", str(folder / "tracks.json")]) == 2
    assert "made for another video" in capfd.readouterr().err
    src = fm.clip("woman_glasses_524_en.mp4")
    assert main(["inspect", str(src), "--tracks", str(folder / "tracks.json"),
                 "--face", "7"]) == 2
    assert "no such track" in capfd.readouterr().err
    assert main(["inspect", str(src), "--face", "someone"]) == 2


def test_dub_run_gives_the_render_loop_the_faces_of_the_tracks_file(inspected, capfd,
                                                                     monkeypatch, tmp_path):
    from dubber.faces.select import FacesStage

    folder, _, _ = inspected
    src = fm.clip("woman_glasses_524_en.mp4")
    dub = fm.MEDIA / "speech" / "zh_read_4s.wav"
    seen: dict[int, list[int]] = {}
    original = FacesStage.__call__

    def spy(self, chunk, models, cfg):
        chunk = original(self, chunk, models, cfg)
        for idx, faces in zip(chunk.frame_indices.tolist(), chunk.faces):
            seen[idx] = [f.track_id for f in faces]
            assert all(f.lip_polygon is not None for f in faces)
        return chunk

    monkeypatch.setattr(FacesStage, "__call__", spy)
    data = json.loads((folder / "tracks.json").read_text())
    n = data["video"]["frame_count"]
    data["shots"][0]["windows"] = [{"start": 10, "end": 59, "track": 0}]
    edited = tmp_path / "half.json"
    edited.write_text(json.dumps(data))
    out = tmp_path / "out.mp4"
    assert main([str(src), "--audio", str(dub), "-o", str(out), "--tracks", str(edited),
                 "--preset", "unittest", "-q"]) == 0
    assert out.is_file()
    assert sorted(seen) == list(range(n))
    assert all(seen[f] == ([0] if 10 <= f <= 59 else []) for f in range(n))
    # a tracks file for another video stops the run before anything is written
    other = fm.clip("man_map_844_en.mp4")
    out2 = tmp_path / "out2.mp4"
    assert main([str(other), "--audio", str(dub), "-o", str(out2), "--tracks",
                 str(edited), "-q"]) == 2
    assert "made for another video" in capfd.readouterr().err and not out2.exists()
