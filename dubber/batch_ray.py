"""The Ray backend of ``dub batch`` (``pip install dubber[ray]``): episodes, and the
segments of long titles, as Ray tasks.

Each episode is a task. One with at least ``SPLIT_MIN`` segments still to render hands them,
in contiguous groups, to segment tasks (one per CPU of the cluster, at most): each renders
its group into the title's parts folder (:mod:`dubber.segments`, a shared claim), and the
episode's task then joins them, as a resumed run would, rendering nothing twice. The
analysis runs once, in the episode's task, before the segment tasks start (they read it
from the cache).

``--address ADDR`` joins an existing cluster (every node must see the manifest's paths and
the analysis cache, ``$DUBBER_CACHE``, on a shared filesystem); without it a local Ray
starts with ``--workers`` CPUs. Where the cluster has GPUs, each task asks for one, so the
model stages run on CUDA there.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from dubber.config import Config
from dubber.errors import UsageError

log = logging.getLogger(__name__)

# Titles with at least this many segments left to render are split into segment tasks.
SPLIT_MIN = 4


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("the ray backend needs Ray: pip install 'dubber[ray]'") from None
    return ray


def run_on_ray(jobs: Sequence[tuple[dict, Config]], workers: int, address: str | None,
               running: Callable[[str], None], record: Callable[[dict], None]) -> None:
    """Run ``jobs`` (episode spec, config) as Ray tasks, ``record`` each result."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = dict(include_dashboard=False, log_to_driver=False,
                      logging_level=logging.WARNING)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, num_gpus=0, **kwargs)
    try:
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        split = max(1, int(resources.get("CPU", 1)))
        task = ray.remote(_episode_task).options(num_cpus=1, num_gpus=gpus, max_retries=0)
        pending = {}
        for spec, cfg in jobs:
            running(spec["name"])
            pending[task.remote(spec, cfg, split, gpus)] = spec["name"]
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                name = pending.pop(ref)
                try:
                    record(ray.get(ref))
                except Exception as exc:  # the task's worker died
                    record({"name": name, "ok": False,
                            "error": f"the Ray task failed ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''})"})
    finally:
        if started_here:
            ray.shutdown()


def _episode_task(spec: dict, cfg: Config, split: int, gpus: int) -> dict:
    """One episode, in a Ray task: its segments fanned out to segment tasks first when the
    title is long enough, then whatever is left rendered and the segments joined."""
    from dubber.batch import run_episode

    ray = _ray()
    groups = []
    if split > 1 and not spec.get("stems"):
        try:
            groups = _segment_groups(spec, cfg, split)
        except Exception as exc:  # the episode's own run reports it properly
            log.info("%s: not split into segment tasks (%s)", spec["name"], exc)
    if len(groups) > 1:
        task = ray.remote(_segment_task).options(num_cpus=1, num_gpus=gpus, max_retries=0)
        errors = [e for e in ray.get([task.remote(spec, cfg, g) for g in groups]) if e]
        if errors:
            return {"name": spec["name"], "ok": False, "error": errors[0], "frames": None,
                    "segments": None, "seconds": None}
    return run_episode(spec, cfg)


def _segment_groups(spec: dict, cfg: Config, split: int) -> list[list[int]]:
    """The title's segments still to render, in at most ``split`` contiguous groups (none
    when fewer than ``SPLIT_MIN``); runs the analysis first, so segment tasks find it."""
    from pathlib import Path

    from dubber.media.probe import probe
    from dubber.segments import plan_segments, read_state, resumable

    if not resumable(cfg):
        return []
    info = probe(spec["input"])
    done = {r["idx"] for r in read_state(Path(spec["output"])) or () if r["done"]}
    todo = [s.index for s in plan_segments(info, cfg) if s.index not in done]
    if len(todo) < SPLIT_MIN:
        return []
    # Render no segment, alone: the inputs checked, the analysis made (and cached), the
    # parts folder's state and fingerprint set before the segment tasks share it.
    if _segment_task(spec, cfg, []) is not None:
        return []
    n = min(split, len(todo))
    size = -(-len(todo) // n)
    return [todo[i:i + size] for i in range(0, len(todo), size)]


def _segment_task(spec: dict, cfg: Config, indices: list[int]) -> str | None:
    """Render some segments of an episode (no join); returns an error message or None."""
    from pathlib import Path

    from dubber.errors import DubberError
    from dubber.pipeline import dub_video

    try:
        Path(spec["output"]).parent.mkdir(parents=True, exist_ok=True)
        dub_video(spec["input"], spec["audio"], spec["output"], cfg,
                  weights_dir=spec.get("weights"), tracks_file=spec.get("tracks"),
                  force=spec.get("force", False), resume=True, keep_parts=True,
                  segments_only=indices)
    except DubberError as exc:
        return str(exc)
    except Exception as exc:
        return f"internal error ({type(exc).__name__}: {exc})"
    return None
