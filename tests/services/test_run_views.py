"""The answers the page asks about runs: read once per change, shared by concurrent pages."""

import threading
import time

import pytest

from services.api.run_views import RunViews


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_until_its_run_changes():
    views = RunViews(max_age_s=60.0)
    state = {"frames": 1}
    read = lambda: dict(state)  # noqa: E731
    assert views.get("a", "detail", read) == {"frames": 1}
    state["frames"] = 2  # Tiled changed, nobody said so yet
    assert views.get("a", "detail", read) == {"frames": 1}
    views.changed("b")  # another run: no effect on run a
    assert views.get("a", "detail", read) == {"frames": 1}
    views.changed("a")
    assert views.get("a", "detail", read) == {"frames": 2}
    assert views.reads == 2


def test_an_answer_expires_after_max_age_without_a_change():
    clock = Clock()
    views = RunViews(max_age_s=2.0, clock=clock)
    values = iter(range(10))
    read = lambda: next(values)  # noqa: E731
    assert views.get("a", "x", read) == 0
    clock.now = 1.9
    assert views.get("a", "x", read) == 0
    clock.now = 4.0
    assert views.get("a", "x", read) == 1


def test_a_change_during_a_read_is_not_hidden_by_that_read():
    """A read that began before the change keeps its (older) generation: the next request
    reads again."""
    views = RunViews(max_age_s=60.0)
    state = {"v": 1}

    def read_while_changing():
        value = dict(state)
        state["v"] = 2
        views.changed("a")  # the watcher saw the change while this read was on its way
        return value

    assert views.get("a", "x", read_while_changing) == {"v": 1}
    assert views.get("a", "x", lambda: dict(state)) == {"v": 2}


def test_errors_are_not_kept():
    views = RunViews()
    calls = []

    def missing():
        calls.append(1)
        raise KeyError("no result yet")

    for _ in range(2):
        with pytest.raises(KeyError, match="no result yet"):
            views.get("a", "result", missing)
    assert len(calls) == 2
    assert views.get("a", "result", lambda: 7) == 7


def test_concurrent_requests_share_one_read():
    views = RunViews()
    started, release = threading.Event(), threading.Event()
    reads = []

    def slow_read():
        reads.append(1)
        started.set()
        assert release.wait(10)
        return {"answer": 42}

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(views.get("a", "detail", slow_read)))
        for _ in range(20)
    ]
    threads[0].start()
    assert started.wait(10)
    for t in threads[1:]:
        t.start()
    time.sleep(0.2)  # the others are waiting for the first read
    release.set()
    for t in threads:
        t.join(10)
    assert results == [{"answer": 42}] * 20
    assert len(reads) == 1 and views.reads == 1


def test_waiters_of_a_failed_read_read_on_their_own():
    views = RunViews()
    started, release = threading.Event(), threading.Event()
    attempts = []

    def first_fails():
        attempts.append(1)
        if len(attempts) == 1:
            started.set()
            assert release.wait(10)
            raise KeyError("not yet")
        return "written"

    outcomes = []

    def ask():
        try:
            outcomes.append(views.get("a", "r", first_fails))
        except KeyError:
            outcomes.append("KeyError")

    first = threading.Thread(target=ask)
    first.start()
    assert started.wait(10)
    others = [threading.Thread(target=ask) for _ in range(3)]
    for t in others:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert sorted(outcomes) == ["KeyError", "written", "written", "written"]
    assert len(attempts) == 2  # one failed read, then one read shared by the three others


def test_the_oldest_answers_go_first_beyond_size():
    views = RunViews(size=2)
    views.get("a", 1, lambda: "a1")
    views.get("a", 2, lambda: "a2")
    views.get("a", 1, lambda: "kept")  # used again: now the newest
    views.get("a", 3, lambda: "a3")  # pushes out answer 2
    assert views.get("a", 1, lambda: "new") == "a1"
    assert views.get("a", 2, lambda: "read again") == "read again"
