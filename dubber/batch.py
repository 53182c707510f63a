"""``dub batch``: a manifest's episodes rendered one after the other, side by side in worker
processes, or as Ray tasks; job state in SQLite; a failed episode does not stop the others.

State: ``MANIFEST.batch.sqlite`` beside the manifest (or ``--state FILE``), one row per
episode: status (pending, running, done, failed), attempts, timings, the error, how often
each of its segments was started and finished, and which process runs it (``dub batch
status`` calls a running episode whose process is gone, a batch killed or stopped,
interrupted). Only the coordinating process writes
it; workers return their results. Every episode renders resumably (``--resume`` and the
parts kept on failure): a batch killed in the middle continues, on the next ``dub batch``,
from each episode's first missing segment; episodes already done are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from dubber.config import Config
from dubber.errors import DubberError, UsageError
from dubber.manifest import Episode, Manifest

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")


def state_path(manifest: Path, state: str | os.PathLike | None = None,
               create: bool = True) -> Path:
    """Where a manifest's job state lives: ``state`` (a file, or a folder to put it in,
    made unless ``create`` is false), else ``MANIFEST.batch.sqlite`` beside the manifest."""
    manifest = Path(manifest)
    if state is None:
        return manifest.with_name(manifest.stem + ".batch.sqlite")
    state = Path(state)
    if state.is_dir() or not state.suffix:
        if create:
            state.mkdir(parents=True, exist_ok=True)
        return state / (manifest.stem + ".batch.sqlite")
    return state


def done_episodes(state_file: Path) -> set[str]:
    """The episodes a job state records as done (none without a state file); read only."""
    if not Path(state_file).is_file():
        return set()
    try:
        db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True, timeout=30)
        try:
            return {r[0] for r in db.execute(
                "SELECT name FROM episodes WHERE status='done'")}
        finally:
            db.close()
    except sqlite3.Error:
        return set()


class BatchState:
    """The job table of one manifest."""

    # Added since the first state files: the sync check's line (check: true); the
    # process that runs the episode (process_token), to tell a live run from a dead one.
    _NEW_COLUMNS = (("sync", "TEXT"), ("owner", "TEXT"))

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS episodes (
                name TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL,
                seconds REAL, error TEXT, output TEXT, frames INTEGER,
                segments TEXT);
        """)
        self._add_columns()

    def _add_columns(self) -> None:
        """Columns newer than a state file written by an older dubber."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(episodes)")}
        for name, kind in self._NEW_COLUMNS:
            if name not in have:
                self.db.execute(f"ALTER TABLE episodes ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    def sync(self, episodes: Sequence[Episode]) -> None:
        for e in episodes:
            self.db.execute("INSERT OR IGNORE INTO episodes (name, output) VALUES (?, ?)",
                            (e.name, str(e.output)))

    def row(self, name: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM episodes WHERE name=?", (name,))
        r = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], r)) if r else None

    def running(self, name: str) -> None:
        self.db.execute("UPDATE episodes SET status='running', attempts=attempts+1, "
                        "started=?, error=NULL, sync=NULL, owner=? WHERE name=?",
                        (time.time(), process_token(), name))

    def result(self, name: str, res: dict) -> None:
        self.db.execute(
            "UPDATE episodes SET status=?, finished=?, seconds=?, error=?, frames=?, "
            "segments=?, sync=? WHERE name=?",
            ("done" if res["ok"] else "failed", time.time(), res.get("seconds"),
             res.get("error"), res.get("frames"), json.dumps(res.get("segments")),
             res.get("sync"), name))


def process_token(pid: int | None = None) -> str | None:
    """``HOST:PID:START`` naming a live process (START: its start time, so that a pid used
    again by another process is not taken for it); None if there is no such process."""
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command's ")"
    except (OSError, IndexError):
        try:  # no /proc: the pid alone
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass  # alive, someone else's
        start = "?"
    return f"{socket.gethostname()}:{pid}:{start}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process of a :func:`process_token` still runs; None when that cannot be
    told from here (another host, or no token: a state written by an older dubber)."""
    if not owner:
        return None
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    return process_token(int(pid)) == owner


# -- one episode (in a worker process, a Ray task, or in-process) -------------------------
def run_episode(spec: dict, cfg: Config) -> dict:
    """Render one episode; never raises for a failure of the episode itself.

    Returns:
        {"name", "ok", "seconds", "frames", "error", "segments": [[starts, renders], ...]}
    """
    from dubber.pipeline import dub_video

    t0 = time.monotonic()
    out = {"name": spec["name"], "ok": False, "frames": None, "error": None, "segments": None}
    try:
        output = Path(spec["output"])
        output.parent.mkdir(parents=True, exist_ok=True)
        if spec.get("stems"):
            from dubber.stems import dub_with_stems

            result = dub_with_stems(spec, cfg)
        else:
            result = dub_video(spec["input"], spec["audio"], output, cfg,
                               weights_dir=spec.get("weights"),
                               tracks_file=spec.get("tracks"), force=spec.get("force", False),
                               resume=True, keep_parts=True)
        out.update(ok=True, frames=result.frames,
                   segments=[[r["starts"], r["renders"]] for r in result.segments])
        from dubber.sync.check import check_line, check_wanted

        if check_wanted(spec.get("check"), spec.get("report"), cfg):  # as `dub` does
            try:
                out["sync"] = check_line(output, spec["audio"], cfg, spec.get("weights"),
                                         spec.get("report"))
            except DubberError as exc:  # the episode is done; only its check failed
                out["sync"] = f"sync: not checked ({exc})"
    except DubberError as exc:
        out["error"] = str(exc)
    except Exception as exc:  # a bug: the episode fails, the batch goes on
        log.exception("episode %s", spec["name"])
        out["error"] = f"internal error ({type(exc).__name__}: {exc})"
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def _worker_init(threads: int) -> None:
    from dubber.media.encode import die_with_parent

    die_with_parent()  # a batch killed with SIGKILL leaves no worker behind
    # The cores shared out, as Ray does for its workers: without it every worker's native
    # libraries (OpenMP, BLAS) start a thread per core and they fight over the cores.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


# -- the runners ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    manifest: str
    state: str
    backend: str
    workers: int
    seconds: float
    episodes: list[dict]

    @property
    def failed(self) -> list[str]:
        return [e["name"] for e in self.episodes if e["status"] == "failed"]

    def to_json(self) -> dict:
        return {"manifest": self.manifest, "state": self.state, "backend": self.backend,
                "workers": self.workers, "seconds": self.seconds,
                "done": sum(e["status"] == "done" for e in self.episodes),
                "failed": len(self.failed), "episodes": self.episodes}


def run_batch(manifest: Manifest, state_file: Path, workers: int = 1, backend: str = "local",
              address: str | None = None,
              on_result: Callable[[dict], None] | None = None) -> Summary:
    """Run every episode not yet done; returns the summary of all of them."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend}: use local or ray")
    if workers < 1:
        raise UsageError("--workers must be 1 or more")
    state = BatchState(state_file)
    t0 = time.monotonic()
    try:
        state.sync(manifest.episodes)
        todo = []
        for e in manifest.episodes:
            row = state.row(e.name)
            if row["status"] == "done" and e.output.exists():
                log.info("%s: done before, skipped", e.name)
                continue
            todo.append(e)
        jobs = [(e.spec(), e.cfg) for e in todo]

        def record(res: dict) -> None:
            state.result(res["name"], res)
            if on_result is not None:
                on_result(res)

        if backend == "ray":
            from dubber.batch_ray import run_on_ray

            run_on_ray(jobs, workers, address, state.running, record)
        elif workers == 1:
            for spec, cfg in jobs:
                state.running(spec["name"])
                record(run_episode(spec, cfg))
        else:
            _run_pool(jobs, workers, state.running, record)
        rows = [state.row(e.name) for e in manifest.episodes]
    finally:
        state.close()
    episodes = [_summary_row(r) for r in rows]
    return Summary(str(manifest.path), str(state_file), backend, workers,
                   round(time.monotonic() - t0, 3), episodes)


def _run_pool(jobs, workers, running, record) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        pending = {}
        for spec, cfg in jobs:
            running(spec["name"])
            pending[pool.submit(run_episode, spec, cfg)] = spec["name"]
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    name = pending.pop(fut)
                    try:
                        record(fut.result())
                    except Exception as exc:  # the worker process died
                        record({"name": name, "ok": False, "error": f"the worker stopped "
                                f"({type(exc).__name__}: {exc})"})
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _summary_row(r: dict) -> dict:
    segs = json.loads(r["segments"]) if r.get("segments") else None
    return {"name": r["name"], "status": r["status"], "output": r["output"],
            "attempts": r["attempts"], "seconds": r["seconds"], "frames": r["frames"],
            "error": r["error"], "sync": r.get("sync"),
            "segments": None if segs is None else {
                "count": len(segs), "started": sum(s[0] for s in segs),
                "rendered": sum(s[1] for s in segs)}}


# -- status --------------------------------------------------------------------------------
def batch_status(manifest: Manifest, state_file: Path) -> list[dict]:
    """Each episode's row, with the progress of an unfinished render (segments done)."""
    from dubber.segments import read_state

    rows = []
    state = BatchState(state_file) if state_file.exists() else None
    try:
        for e in manifest.episodes:
            row = (state.row(e.name) if state else None) or {
                "name": e.name, "status": "pending", "attempts": 0, "seconds": None,
                "frames": None, "error": None, "output": str(e.output), "segments": None}
            item = _summary_row(row)
            if item["status"] == "running" and owner_alive(row.get("owner")) is False:
                item["status"] = "interrupted"  # its batch was killed or stopped
            parts = read_state(e.output) if item["status"] != "done" else None
            if parts:
                item["progress"] = {"segments_done": sum(p["done"] for p in parts),
                                    "segments": len(parts)}
            rows.append(item)
    finally:
        if state:
            state.close()
    return rows
