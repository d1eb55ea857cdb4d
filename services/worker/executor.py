"""Where ptychogram tasks run: threads of this process, or a Dask cluster.

Both executors take the same task function and arguments and return futures with
``done()`` and ``result()``; the worker keeps at most ``max_concurrent`` in flight, so a
stack of 84 ptychograms never holds more than that many reconstructions in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from services.worker.config import WorkerSettings

#: Dask settings of the workers this module starts (a local cluster). The statistical
#: profiler of a Dask worker calls ``sys._current_frames()`` every 10 ms; on CPython 3.11
#: that call can deadlock the whole process when a garbage collection runs inside it while
#: another thread ends (python/cpython#106883), and a task creates and ends threads all
#: the time (its Tiled subscriptions). Seen here: a worker hung for good after two
#: ptychograms. Deployed workers get the same from ``deploy/dask.env``.
DASK_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


class LocalExecutor:
    """Tasks in a thread pool of ``max_concurrent`` threads (the default)."""

    kind = "local"

    def __init__(self, max_concurrent: int = 1) -> None:
        self.pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="sptycho-recon")
        self.stop_event = threading.Event()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args, self.stop_event.is_set)

    def shutdown(self, wait: bool = True) -> None:
        self.stop_event.set()
        self.pool.shutdown(wait=wait, cancel_futures=True)


class DaskExecutor:
    """Tasks on a Dask cluster: the scheduler at ``address``, or a local cluster.

    The local cluster has one worker per GPU with ``dask-cuda`` when it is installed, else
    ``max_concurrent`` single-threaded workers (threads of this process when
    ``processes`` is False). Its scheduler restarts a worker process that has sent no
    heartbeat for ``worker_ttl_s`` (a hung process: its nanny kills it and starts a new one;
    the scheduler looks once per ttl) and runs its tasks again, each starting its
    ptychogram again from Tiled. A task that loses its process more often than Dask's
    ``allowed-failures`` fails; the streaming worker then submits it again.

    Raises
    ------
    ValueError
        If ``dask.distributed`` is not installed.
    """

    kind = "dask"

    def __init__(
        self,
        address: str | None = None,
        max_concurrent: int = 1,
        processes: bool = True,
        worker_ttl_s: float = 60.0,
    ) -> None:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ValueError(
                "executor 'dask' needs dask.distributed: pip install distributed "
                "(and dask-cuda for one worker per GPU)"
            ) from None
        import dask

        self.cluster = None
        if address:
            self.client = Client(address)
            return
        # handed to the workers it starts; the ttl to its scheduler, which restarts a
        # worker process that stopped sending heartbeats (hung) through its nanny
        ttl = {"distributed.scheduler.worker-ttl": f"{worker_ttl_s}s"}
        with dask.config.set({**DASK_WORKER_CONFIG, **ttl}):
            try:
                from dask_cuda import LocalCUDACluster  # type: ignore[import-not-found]

                self.cluster = LocalCUDACluster()
            except (ImportError, RuntimeError, ValueError):
                self.cluster = LocalCluster(
                    n_workers=max_concurrent,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=None,
                )
        self.client = Client(self.cluster)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        # pure=False: the same ptychogram may be submitted again (redo, restart)
        return self.client.submit(fn, *args, pure=False)

    def shutdown(self, wait: bool = True) -> None:
        # bounded: a cluster that does not answer must not hold the worker's exit forever
        self.client.close(timeout=20)
        if self.cluster is not None:
            self.cluster.close(timeout=20)


def make_executor(settings: WorkerSettings, processes: bool = True) -> Any:
    """The executor named by ``settings.executor``."""
    if settings.executor == "dask":
        return DaskExecutor(
            settings.dask_scheduler,
            settings.max_concurrent,
            processes,
            settings.dask_worker_ttl_s,
        )
    return LocalExecutor(settings.max_concurrent)
