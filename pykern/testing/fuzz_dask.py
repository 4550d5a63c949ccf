"""``pykern fuzz --scheduler``: the fuzz campaign on a Dask distributed cluster (issue #21).

The cases are the ones :mod:`pykern.testing.fuzz` draws (case ``i`` depends on the seed, ``i``
and the drawing options alone), so a campaign on Dask reports the same cases, results and
replay lines as the local process pool; only the timing keys and ``jobs`` / ``scheduler``
differ.  ``--scheduler ADDRESS`` connects to a running scheduler (``tcp://host:8786``);
``--scheduler local[:N]`` starts a :class:`distributed.LocalCluster` of N worker processes
with one thread each, bound to 127.0.0.1 and with no dashboard.

- **Batches.**  A task runs a batch of consecutive case indices
  (:func:`pykern.testing.fuzz.run_chunk`), so the scheduler's per-task cost (a few ms) is
  spread over the batch; at most a window of a few batches per worker thread is submitted at
  a time, so a campaign of millions of cases never floods the scheduler.
- **Streaming.**  Results come back through :func:`distributed.as_completed` as each batch
  finishes; the report is sorted by case at the end.
- **Lost workers.**  A worker that dies mid-batch is replaced (by its nanny) and the scheduler
  runs the batch again elsewhere; a batch that keeps killing workers comes back as
  ``KilledWorker``, and once the other batches are done each of its cases runs again alone,
  one at a time, so only the case that kills its worker is reported (kind ``error``, rule
  ``WorkerDied``), as the local pool does.
  Exceptions raised by a task are retried (``retries`` on submit).
- **Ctrl-C** cancels the outstanding futures, closes the client and the local cluster, and
  the report covers the cases that finished.

Dask is an optional dependency: ``pip install 'pykern-emu[dask]'``.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TextIO

from .fuzz.cases import Config
from .fuzz.runner import default_batch, failure_record, prepare_worker, run_chunk

# distributed is optional and only partly typed: its objects are handled as Any here.
Client = Any
Future = Any

__all__ = ["INSTALL_HINT", "DaskMissing", "SchedulerError", "Scheduler", "parse_scheduler",
           "require_dask", "run_on_dask"]

INSTALL_HINT = "pip install 'pykern-emu[dask]'"
#: How many exception retries a batch gets (``Client.submit(retries=...)``).  Worker deaths
#: are retried by the scheduler itself, up to ``distributed.scheduler.allowed-failures``.
RETRIES = 2
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?[^\s/]+$")

Runner = Callable[[Config, Sequence[int]], "list[dict[str, Any]]"]
Take = Callable[[Iterable[dict[str, Any]]], None]


class DaskMissing(RuntimeError):
    """``--scheduler`` without Dask's distributed package installed."""


class SchedulerError(RuntimeError):
    """The scheduler cannot be reached or used (bad address, workers without pykern, ...)."""


@dataclass(frozen=True)
class Scheduler:
    """Where to run: ``address`` of a running scheduler, or a local cluster of ``workers``."""

    text: str
    address: str | None
    workers: int = 0

    @property
    def local(self) -> bool:
        return self.address is None


def parse_scheduler(text: str) -> Scheduler:
    """``local``, ``local:N`` or a scheduler address; ValueError for anything else.

    ``local`` alone starts one worker per CPU."""
    if text == "local" or text.startswith("local:"):
        count = text[len("local:"):] if text != "local" else ""
        if not count:
            return Scheduler(text, None, os.cpu_count() or 1)
        try:
            n = int(count, 10)
        except ValueError:
            raise ValueError(f"{text!r}: the worker count after 'local:' must be an "
                             f"integer") from None
        if n < 1:
            raise ValueError(f"{text!r}: a local cluster needs at least 1 worker")
        return Scheduler(text, None, n)
    if not _ADDRESS.match(text) or ":" not in text.split("://")[-1]:
        raise ValueError(f"{text!r} is not a scheduler address: expected tcp://HOST:PORT "
                         f"(e.g. tcp://127.0.0.1:8786) or local[:N]")
    return Scheduler(text, text)


def require_dask() -> Any:
    """The ``distributed`` module; :class:`DaskMissing`, saying how to install it, when it
    is absent."""
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise DaskMissing(f"--scheduler needs Dask's distributed scheduler ({exc.name or exc} "
                          f"is not installed): {INSTALL_HINT}") from None


def _worker_version() -> str:
    """Runs on each worker: the pykern-emu version it imports."""
    from .. import __version__
    return str(__version__)


def _block_sigint() -> Any:
    block = getattr(signal, "pthread_sigmask", None)
    return block(signal.SIG_BLOCK, {signal.SIGINT}) if block is not None else None


def _restore_sigmask(old: Any) -> None:
    if old is not None and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _start_local(n: int) -> tuple[Any, Client]:
    """A LocalCluster of ``n`` one-thread worker processes on 127.0.0.1, no dashboard.

    Its workers preload this module, whose :func:`dask_setup` makes them ignore SIGINT: a
    terminal's Ctrl-C is for this process, which shuts the cluster down itself.  SIGINT is
    held back here while the cluster starts, so an interrupt never leaves it running."""
    dist = require_dask()
    dconf = importlib.import_module("dask").config
    preload = list(dconf.get("distributed.worker.preload") or [])
    # no dashboard, so nobody reads the workers' statistical profiler: switch it off (a
    # Nanny's config= replaces whole top-level sections, hence the full copy)
    worker_conf = dconf.update(copy.deepcopy(dconf.config),
                               {"distributed": {"worker": {"profile": {"enabled": False}}}})
    old = _block_sigint()
    cluster: Any = None
    client: Any = None
    try:
        # no dashboard; the scheduler's small HTTP server (health, metrics) still starts:
        # on 127.0.0.1 and a free port, not on 8787 where another cluster may be
        cluster = dist.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None,
                                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                    silence_logs=logging.ERROR, preload=[*preload, __name__],
                                    config=worker_conf)
        client = dist.Client(cluster, set_as_default=False)
        _restore_sigmask(old)            # a Ctrl-C that came meanwhile is raised here
        old = None
    except BaseException:
        _close(client, cluster)
        raise
    finally:
        _restore_sigmask(old)
    return cluster, client


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in each worker process of a ``--scheduler local`` cluster
    when it starts: ignore SIGINT (the parent stops the cluster on Ctrl-C); it is a fuzz
    worker (:func:`~pykern.testing.fuzz.runner.prepare_worker`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_worker()


def _connect(address: str) -> Client:
    dist = require_dask()
    try:
        return dist.Client(address, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def _check_workers(client: Client, where: str, stream: TextIO) -> int:
    """Wait for a worker, check that every worker runs this pykern-emu version; return the
    number of worker threads."""
    from .. import __version__

    if not client.nthreads():
        print(f"pykern fuzz: waiting for workers to join the scheduler at {where}",
              file=stream)
        client.wait_for_workers(1)
    try:
        versions: dict[str, str] = client.run(_worker_version)
    except Exception as exc:
        raise SchedulerError(f"the workers of {where} cannot run pykern ({type(exc).__name__}:"
                             f" {exc}): install pykern-emu {__version__} on them") from None
    other = sorted(f"{w} ({v})" for w, v in versions.items() if v != __version__)
    if other:
        raise SchedulerError(f"workers of {where} run another pykern-emu than this one "
                             f"({__version__}), so their cases would differ: "
                             f"{', '.join(other)}")
    return max(1, int(sum(client.nthreads().values())))


def _close(client: Client | None, cluster: Any) -> None:
    if client is not None:
        try:
            client.close(timeout=10)
        except Exception:
            pass
    if cluster is not None:
        try:
            cluster.close(timeout=10)
        except Exception:
            pass


def run_on_dask(config: Config, scheduler: Scheduler, indices: Sequence[int], take: Take,
                info: dict[str, Any], batch: int | None = None,
                runner: Runner = run_chunk, retries: int = RETRIES,
                stream: TextIO = sys.stderr) -> None:
    """Run the cases ``indices`` of ``config`` on Dask, handing each finished batch to
    ``take`` as it completes.

    ``info`` receives ``jobs`` (worker threads when the campaign started), ``batch`` and
    ``scheduler`` as soon as they are known, and ``ready``, the ``time.perf_counter()``
    when the workers were ready (what came before is the cluster's start-up).
    ``runner(config, indices)`` is what a task runs (:func:`~pykern.testing.fuzz.run_chunk`;
    tests pass one that kills its worker).
    Raises :class:`SchedulerError` when the scheduler cannot be used; any exception,
    KeyboardInterrupt included, cancels the futures and closes the client and the local
    cluster before it propagates."""
    dist = require_dask()
    killed_worker: type[BaseException] = dist.KilledWorker
    cancelled: type[BaseException] = importlib.import_module(
        "distributed.client").FutureCancelledError

    info["scheduler"] = scheduler.text
    cluster: Any = None
    client: Client | None = None
    pending: dict[Future, tuple[list[int], bool]] = {}
    # a lost scheduler is reported once, as SchedulerError, not as the client's tracebacks
    client_log = logging.getLogger("distributed.client")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        if scheduler.address is None:
            cluster, client = _start_local(scheduler.workers)
            where = f"local:{scheduler.workers}"
        else:
            client = _connect(scheduler.address)
            where = scheduler.address
        threads = _check_workers(client, where, stream)
        size = batch or default_batch(len(indices), threads)
        info["jobs"], info["batch"] = threads, size
        info["ready"] = time.perf_counter()      # the cluster is up: cases start now
        todo = deque(list(indices[k:k + size]) for k in range(0, len(indices), size))
        window = max(8, 4 * threads)
        flow = dist.as_completed(loop=client.loop)
        tag = uuid.uuid4().hex[:12]

        def submit(chunk: list[int], alone: bool) -> None:
            assert client is not None
            fut = client.submit(runner, config, chunk, key=f"pykern-fuzz-{tag}-{chunk[0]}"
                                f"{'-alone' if alone else ''}", retries=retries, pure=False)
            pending[fut] = (chunk, alone)
            flow.add(fut)

        def refill() -> None:
            while todo and len(pending) < window:
                submit(todo.popleft(), False)

        refill()
        checked = time.monotonic()
        suspects: list[int] = []
        for fut in flow:
            chunk, alone = pending.pop(fut)
            try:
                results: list[dict[str, Any]] = fut.result()
            except cancelled as exc:
                raise SchedulerError(f"the scheduler at {where} cancelled the campaign's "
                                     f"tasks ({exc})") from None
            except Exception as exc:
                if alone:
                    take([_lost_case(config, chunk[0], exc, isinstance(exc, killed_worker))])
                else:
                    suspects += chunk
            else:
                take(results)
            fut.release()
            if time.monotonic() - checked > 2.0:     # workers may have joined or left
                checked = time.monotonic()
                window = max(8, 4 * max(1, sum(client.nthreads().values())))
            refill()
            if not pending and suspects:
                # the cases of failed batches, each alone on an otherwise idle cluster: a
                # worker that dies now was killed by that case (a task queued beside it
                # would share the blame, the scheduler counting every task assigned there)
                suspects.sort()
                submit([suspects.pop(0)], True)
    finally:
        if pending and client is not None:
            try:
                client.cancel(list(pending), force=True)
            except Exception:
                pass
        pending.clear()
        _close(client, cluster)
        client_log.setLevel(level)


def _lost_case(config: Config, index: int, exc: BaseException, killed: bool) -> dict[str, Any]:
    """The result of a case whose task failed even alone: a WorkerDied (or task) error."""
    if killed:
        rule, detail = "WorkerDied", (f"the worker process died running this case, on every "
                                      f"attempt the scheduler allowed (KilledWorker)")
    else:
        rule, detail = type(exc).__name__, f"the Dask task failed: {exc}"
    return {"case": index, "arch": None, "modes": {},
            "failures": [failure_record(config, index, None, None, "error", rule, detail)]}
