"""Large energy moves (706 <-> 192 eV) through the RunEngine and ``set().wait()`` never hang.

A move finishes in a Channel Access callback thread: ophyd finishes the move's status, then
clears the positioner's completion subscriptions. A waiter woken by the status can start the
next move in between; that move's status must still finish (it used to be cleared, and the
RunEngine waited forever).
"""

from __future__ import annotations

import threading
import time

import pytest
from ophyd.status import StatusBase

from devices.optics import ZonePlateOptics

pytestmark = pytest.mark.timeout(240)

HIGH, LOW = 706.0, 192.0


def run_plan(RE, plan, timeout: float) -> None:
    """Run ``plan`` in a daemon thread; fail (instead of hanging) after ``timeout`` s."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            RE(plan)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        RE.halt()
        pytest.fail(f"RunEngine still waiting after {timeout} s (state {RE.state})")
    if errors:
        raise errors[0]


def assert_at(optics, energy: float, spot: float = 1.0) -> None:
    theory = ZonePlateOptics().zp_z_um(spot, energy)
    assert optics.mono.position == pytest.approx(energy, abs=1e-3)
    assert optics.zp_z.position == pytest.approx(theory, abs=1e-3)
    assert optics.position.spot == pytest.approx(spot, abs=1e-6)


@pytest.fixture
def optics(beamline):
    optics = beamline.optics
    optics.mono.velocity.put(50.0, wait=True)
    optics.set(HIGH, 1.0).wait(60)
    yield optics
    optics.mono.velocity.put(50.0, wait=True)


def test_energy_706_to_192_and_back_at_the_mono_velocity(optics):
    """The move of the report: 10 s of mono travel and ~5 mm of zone plate z."""
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine

    RE = RunEngine(context_managers=[])
    assert optics.zp_z.position - ZonePlateOptics().zp_z_um(1.0, LOW) > 4000
    run_plan(RE, bps.mv(optics.energy, LOW), timeout=60)
    assert_at(optics, LOW)
    optics.energy.set(HIGH).wait(timeout=60)
    assert_at(optics, HIGH)


def test_repeated_energy_moves_with_the_run_engine_and_set_wait(optics, caplog):
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine

    RE = RunEngine(context_managers=[])
    optics.mono.velocity.put(2000.0, wait=True)  # same path, shorter moves
    for _ in range(2):
        run_plan(RE, bps.mv(optics.energy, LOW), timeout=30)
        assert_at(optics, LOW)
        run_plan(RE, bps.mv(optics.energy, HIGH), timeout=30)
        assert_at(optics, HIGH)
        optics.energy.set(LOW).wait(timeout=30)
        assert_at(optics, LOW)
        optics.energy.set(HIGH).wait(timeout=30)
        assert_at(optics, HIGH)
    assert not [r for r in caplog.records if "callback exception" in r.getMessage()]


@pytest.mark.parametrize("axis", ["optics", "mono", "zp_z"])
def test_next_move_started_while_the_previous_one_finishes(optics, axis):
    """A waiter starts the next move before ophyd has cleared the finished move's callbacks.

    A callback subscribed after the first move's status runs in the thread finishing that
    move, between finishing the status and clearing the subscriptions; it starts the next
    move from another thread and gives it time to subscribe its status. That status must
    still finish.
    """
    optics.mono.velocity.put(2000.0, wait=True)
    zp = ZonePlateOptics()
    device, low, high, move_to = {
        "optics": (optics, LOW, HIGH, optics.energy.set),
        "mono": (optics.mono, LOW, HIGH, optics.mono.set),
        "zp_z": (optics.zp_z, zp.zp_z_um(1.0, LOW), zp.zp_z_um(1.0, HIGH), optics.zp_z.set),
    }[axis]
    following: list[StatusBase] = []

    def start_next(success: bool = False, **_kwargs) -> None:
        if not success:
            return
        mover = threading.Thread(target=lambda: following.append(move_to(high)), daemon=True)
        mover.start()
        mover.join(2.0)

    first = move_to(low)
    device.subscribe(start_next, event_type=device._SUB_REQ_DONE, run=False)
    first.wait(timeout=30)
    assert first.success
    for _ in range(200):
        if following:
            break
        time.sleep(0.05)
    assert following, "the next move did not start"
    following[0].wait(timeout=20)
    assert following[0].success
    if axis == "optics":
        assert_at(optics, HIGH)
    else:
        assert device.position == pytest.approx(high, abs=1e-3)
        optics.set(HIGH, 1.0).wait(30)


def test_stalled_mono_fails_the_energy_move_naming_it_and_late_axes_stay_quiet(optics, ioc, caplog):
    """A real axis failing first fails the move (naming it); the other axis finishing later
    and the next move raise nothing inside callbacks."""
    import epics

    optics.mono.velocity.put(2000.0, wait=True)
    assert epics.caput(f"{ioc.prefix}fault:motor_stall", "mono", wait=True, timeout=5) == 1
    optics.mono.margin_s = 0.5
    try:
        st = optics.energy.set(LOW)
        with pytest.raises(TimeoutError, match="optics_mono"):
            st.wait(timeout=20)
        time.sleep(6.0)  # zone plate z arrives after the move has failed
        optics.mono.stop()
    finally:
        epics.caput(f"{ioc.prefix}fault:motor_stall", "", wait=True, timeout=5)
        optics.mono.margin_s = 10.0
    optics.set(HIGH, 1.0).wait(timeout=30)
    assert_at(optics, HIGH)
    assert not [r for r in caplog.records if "callback exception" in r.getMessage()]
