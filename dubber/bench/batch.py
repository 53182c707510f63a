"""Batch throughput: two episodes one after the other, side by side (``--workers 2``), and
through a local Ray, in the same run.

``python -m dubber.bench batch [--mode models|passthrough] [--skip-ray] [--json]``

Each configuration renders the same two shared clips into a fresh folder with a fresh
analysis cache (so each pays for the whole job: analysis, models, encode), and prints one
figure per line (``name: value unit``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from dubber.bench.media import SHARED_MEDIA as MEDIA
from dubber.bench.report import Report, add_json_flag

EPISODES = [("ep01", "clips/man_map_844_en.mp4", "speech/hi_news_22s.wav"),
            ("ep02", "clips/woman_glasses_524_en.mp4", "speech/en_kimk_8s.mp3")]


def _manifest(folder: Path, mode: str) -> Path:
    defaults = {"preset": "fast"} if mode == "models" else {"preset": "fast",
                                                            "passthrough": True}
    folder.mkdir(parents=True)
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump({"defaults": defaults, "episodes": [
        {"name": n, "input": str(MEDIA / c), "audio": str(MEDIA / a), "output": f"out/{n}.mp4"}
        for n, c, a in EPISODES]}))
    return path


def _run(root: Path, label: str, mode: str, workers: int, backend: str) -> dict:
    from dubber.batch import run_batch, state_path
    from dubber.manifest import load_manifest

    folder = root / label
    manifest = load_manifest(_manifest(folder, mode))
    os.environ["DUBBER_CACHE"] = str(folder / "cache")  # every run analyses afresh
    t0 = time.perf_counter()
    summary = run_batch(manifest, state_path(manifest.path), workers, backend)
    wall = time.perf_counter() - t0
    if summary.failed:
        raise SystemExit(f"{label}: episodes failed: {summary.to_json()['episodes']}")
    return {"wall_s": wall, "episode_s": [e["seconds"] for e in summary.episodes]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.bench batch",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["models", "passthrough"], default="models",
                    help="fast-preset model renders (default) or pass-through re-encodes")
    ap.add_argument("--skip-ray", action="store_true", help="leave the Ray backend out")
    add_json_flag(ap)
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("dubber").setLevel(logging.ERROR)  # the dubs' length warnings
    if not MEDIA.is_dir():
        raise SystemExit(f"needs the shared media in {MEDIA}")
    old_cache = os.environ.get("DUBBER_CACHE")
    figures: dict[str, float | str] = {"cpus": os.cpu_count() or 0, "mode": args.mode}
    with tempfile.TemporaryDirectory(prefix="dubber-bench-batch-") as tmp:
        root = Path(tmp)
        try:
            seq = _run(root, "sequential", args.mode, 1, "local")
            par = _run(root, "workers2", args.mode, 2, "local")
            figures.update(sequential_s=seq["wall_s"], workers2_s=par["wall_s"],
                           workers2_speedup=seq["wall_s"] / par["wall_s"],
                           sequential_episode_s=max(seq["episode_s"]),
                           workers2_episode_s=max(par["episode_s"]))
            if not args.skip_ray:
                ray = _run(root, "ray2", args.mode, 2, "ray")
                figures.update(ray2_s=ray["wall_s"],
                               ray2_vs_workers2=ray["wall_s"] / par["wall_s"],
                               ray2_episode_s=max(ray["episode_s"]))
        finally:
            if old_cache is None:
                os.environ.pop("DUBBER_CACHE", None)
            else:
                os.environ["DUBBER_CACHE"] = old_cache
    report = Report("batch", args.json)
    for k, v in figures.items():
        unit = "x" if ("speedup" in k or "_vs_" in k) else "s" if k.endswith("_s") else ""
        report.figure(k, v, unit)
    report.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
