"""The Ray backend of ``dub batch`` (``pip install dubber[ray]``): one Ray task per episode.

``--address ADDR`` joins an existing cluster (every node must see the manifest's paths, a
shared filesystem); without it a local Ray starts with ``--workers`` CPUs. Where the
cluster has GPUs, each task asks for one, so the model stages run on CUDA there.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from dubber.config import Config
from dubber.errors import UsageError

log = logging.getLogger(__name__)


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
    from dubber.batch import run_episode

    started_here = not ray.is_initialized()
    if started_here:
        kwargs = dict(include_dashboard=False, log_to_driver=False,
                      logging_level=logging.WARNING)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, num_gpus=0, **kwargs)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(run_episode).options(num_cpus=1, num_gpus=gpus, max_retries=0)
        pending = {}
        for spec, cfg in jobs:
            running(spec["name"])
            pending[task.remote(spec, cfg)] = spec["name"]
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
