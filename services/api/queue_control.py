"""Scans from the web page through the beamline's bluesky queue server.

On a beamline the queue server owns the one RunEngine; :class:`QueueController` gives the
page the same methods as the in-process :class:`~services.api.control.ScanController`
(``state``, ``start``, ``pause``, ``resume``, ``abort``, ``close``) on top of it:

========  ==================================================================================
start     the parameters are checked by the plan's model (422 on the page), the plan is added
          to the queue (``ptycho_stack`` / ``ptycho_raster``), and the queue is started when
          it is not running (after opening the environment if it is closed)
pause     ``re_pause("immediate")``: the plan stops at once and rewinds to its last
          checkpoint, like the in-process pause
resume    ``re_resume``
abort     ``re_abort`` (after an immediate pause when running); the copy of the item that the
          queue server pushes back to the front of the queue is removed, so that the page's
          abort means "not again"
========  ==================================================================================

The state has the keys the page knows (``state``, ``plan``, ``notice``, ``last_uid``,
``last_exit``, ``last_error``) plus ``queue`` (the pending items, next first) and ``backend``
(``"queue"``); ``plan`` is the running item whoever queued it (the console's ``qserver``
too), with its ``user``. A thread reads the RE manager's status every ``poll_s`` and, when
anything the page shows changed, reads the queue and the history and publishes the state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from services.api.control import ControllerBusy, ScanRequest
from services.queue_client import (
    WEB_USER,
    describe_item,
    last_outcome,
    manager_notice,
    plan_item,
    refusals,
    scan_state,
    validated_kwargs,
)

log = logging.getLogger("sptycho.api")

#: Status fields whose change makes the page's state change.
WATCHED = (
    "manager_state",
    "re_state",
    "plan_queue_uid",
    "plan_history_uid",
    "running_item_uid",
    "worker_environment_exists",
    "queue_stop_pending",
)


class QueueController:
    """The page's scan controller when the queue server runs the scans.

    Parameters
    ----------
    manager : an ``REManagerAPI`` (threads) of the queue server
        (:func:`services.queue_client.connect_manager`)
    on_change : called with :meth:`state` whenever it changes (the app publishes it)
    poll_s : how often the RE manager's status is read
    open_timeout_s : how long :meth:`start` waits for a closed environment to open
    """

    backend = "queue"

    def __init__(
        self,
        manager: Any,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 0.5,
        open_timeout_s: float = 90.0,
    ) -> None:
        self.manager = manager
        self.on_change = on_change
        self.poll_s = poll_s
        self.open_timeout_s = open_timeout_s
        self._lock = threading.RLock()  # one request at a time on the manager's socket
        self._state: dict[str, Any] = self._unavailable("queue server not read yet")
        self._key: tuple | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="sptycho-queue-state", daemon=True)
        self.refresh()
        self._thread.start()

    # ------------------------------------------------------------------ state
    def _unavailable(self, why: str) -> dict[str, Any]:
        return {
            "state": "unavailable",
            "plan": None,
            "notice": why,
            "last_uid": None,
            "last_exit": None,
            "last_error": None,
            "queue": [],
            "backend": self.backend,
        }

    def _status(self) -> dict[str, Any]:
        """The RE manager's status; :class:`ControllerBusy` (409) when it does not answer."""
        try:
            with self._lock:
                return self.manager.status(reload=True)
        except Exception as err:  # noqa: BLE001 - 0MQ timeouts, HTTP errors: one line
            line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ControllerBusy(f"queue server not answering: {line}") from None

    def _read(self, status: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            queue = self.manager.queue_get(reload=True)
            history = self.manager.history_get(reload=True)["items"]
        return {
            "state": scan_state(status),
            "plan": describe_item(queue.get("running_item")),
            "notice": manager_notice(status),
            **last_outcome(history),
            "queue": [describe_item(item) for item in queue.get("items", [])],
            "backend": self.backend,
            "manager_state": status.get("manager_state"),
        }

    def state(self) -> dict[str, Any]:
        """The last state read (at most ``poll_s`` old; fresh after every command)."""
        return dict(self._state)

    def refresh(self, publish: bool = True) -> dict[str, Any]:
        """Read the RE manager now; publish when what the page shows changed."""
        try:
            status = self._status()
            key = tuple(status.get(k) for k in WATCHED)
            if key == self._key:
                return self.state()
            state = self._read(status)
        except Exception as err:  # noqa: BLE001 - the page shows it; polling goes on
            key = ("unavailable",)
            line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            state = self._unavailable(
                line if isinstance(err, ControllerBusy) else f"queue server not answering: {line}"
            )
        changed = state != self._state
        self._state, self._key = state, key
        if changed and publish and self.on_change is not None:
            try:
                self.on_change(self.state())
            except Exception:  # noqa: BLE001 - a listener's failure is not the queue's
                log.exception("scan state listener failed")
        return self.state()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def _wait_for(self, condition: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self._status()):
                return
            time.sleep(0.05)

    def _request(self, call: Callable[[], Any]) -> Any:
        """A request to the RE manager; its refusal becomes :class:`ControllerBusy` (409)."""
        try:
            with self._lock:
                return call()
        except refusals() as err:
            raise ControllerBusy(str(err).splitlines()[0]) from None

    # ------------------------------------------------------------------ commands
    def start(self, request: ScanRequest) -> dict[str, Any]:
        """Check the parameters, queue the plan and start the queue if it is not running.

        Raises
        ------
        pydantic.ValidationError
            When the plan's model refuses the parameters (nothing is queued).
        ControllerBusy
            When the queue server refuses the item or the queue cannot start.
        """
        kwargs = validated_kwargs(request.kind, request.params)
        added = self._request(
            lambda: self.manager.item_add(plan_item(request.kind, kwargs, WEB_USER))
        )
        item_uid = (added or {}).get("item", {}).get("item_uid")
        status = self._status()
        if not status.get("worker_environment_exists"):
            self._request(self.manager.environment_open)
            self._wait_for(
                lambda s: s.get("worker_environment_exists") and s["manager_state"] == "idle",
                self.open_timeout_s,
            )
            status = self._status()
        if status.get("manager_state") == "idle":
            history_uid, runs_uid = status.get("plan_history_uid"), status.get("run_list_uid")
            self._request(self.manager.queue_start)
            # a plan checks its dose before it opens its run: wait for the run or the end
            self._wait_for(
                lambda s: (
                    s.get("run_list_uid") != runs_uid or s.get("plan_history_uid") != history_uid
                ),
                10.0,
            )
            self._raise_if_refused(item_uid)
        return self.refresh()

    def _raise_if_refused(self, item_uid: str | None) -> None:
        """When the item just started was refused by its plan before anything moved (its
        error line starts ``refused:``, e.g. a dose over budget), remove the copy the queue
        server pushed back and raise the line, as the in-process controller does.

        Raises
        ------
        ValueError
            The plan's one-line refusal (the page's 422).
        """
        history = self._request(lambda: self.manager.history_get(reload=True))["items"]
        if not history or history[-1].get("item_uid") != item_uid:
            return
        error = last_outcome(history)["last_error"] or ""
        at = error.find("refused:")
        if at < 0:
            return
        self._drop_pushed_back(history[-1])
        self.refresh()
        raise ValueError(error[at:])

    def _settled(self) -> dict[str, Any]:
        """The status once the RunEngine has caught up with the queue: a plan that the
        manager is starting is given a moment to be running."""
        status = self._status()
        if status.get("manager_state") == "executing_queue" and status.get("re_state") in (
            None,
            "idle",
        ):
            self._wait_for(
                lambda s: s.get("re_state") not in (None, "idle") or s["manager_state"] == "idle",
                10.0,
            )
            status = self._status()
        return status

    def pause(self) -> dict[str, Any]:
        """Pause the running plan at once (it rewinds to its last checkpoint)."""
        if self._settled().get("re_state") != "running":
            raise ControllerBusy(f"nothing running to pause (state {self.refresh()['state']})")
        self._request(lambda: self.manager.re_pause("immediate"))
        # the RunEngine pauses first, then the manager: answer once both have
        self._wait_for(
            lambda s: s.get("manager_state") == "paused" or s.get("re_state") == "idle", 10.0
        )
        return self.refresh()

    def resume(self) -> dict[str, Any]:
        """Resume the paused plan."""
        if self._status().get("manager_state") != "paused":
            raise ControllerBusy(f"nothing paused to resume (state {self.refresh()['state']})")
        self._request(self.manager.re_resume)
        # the RunEngine resumes first, then the manager: answer once both have
        self._wait_for(
            lambda s: s.get("re_state") != "paused" and s.get("manager_state") != "paused", 10.0
        )
        return self.refresh()

    def abort(self) -> dict[str, Any]:
        """Abort the running or paused plan; the queue stops, recorded data stay."""
        status = self._settled()
        if status.get("re_state") in ("running", "pausing"):
            self._request(lambda: self.manager.re_pause("immediate"))
            self._wait_for(lambda s: s.get("manager_state") == "paused", 10.0)
        elif status.get("manager_state") != "paused":
            raise ControllerBusy("no scan to abort")
        running = self._request(lambda: self.manager.queue_get(reload=True)).get("running_item")
        self._request(self.manager.re_abort)
        self._wait_for(lambda s: s.get("manager_state") == "idle", 30.0)
        self._drop_pushed_back(running or {})
        return self.refresh()

    def _drop_pushed_back(self, aborted: dict[str, Any]) -> None:
        """Remove the copy of ``aborted`` that the queue server put back in front."""
        items = self._request(lambda: self.manager.queue_get(reload=True)).get("items", [])
        if items and all(items[0].get(k) == aborted.get(k) for k in ("name", "args", "kwargs")):
            self._request(lambda: self.manager.item_remove(uid=items[0]["item_uid"]))

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading the queue server (what it runs goes on) and close the connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            self.manager.close()
