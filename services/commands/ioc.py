"""``sptycho ioc``: serve the simulated beamline over Channel Access (caproto, loopback)."""

from __future__ import annotations

import re

import typer

from services.errors import fail
from services.validation import require_finite


def ioc(
    prefix: str = typer.Option("SIM:", help="PV prefix of every beamline PV."),
    sample: str = typer.Option("bn-bamboo", help="Sample in the beam."),
    port: int = typer.Option(None, help="Channel Access port (default EPICS_CA_SERVER_PORT)."),
    seed: int = typer.Option(0, help="Seed of the sample model and the camera noise."),
    energy: float = typer.Option(192.0, help="Initial photon energy (eV)."),
    flux: float = typer.Option(1e8, help="Focused-beam flux at 400 mA (photons/s)."),
    area: float = typer.Option(4e-6, help="Side of the patterned sample area (m)."),
    distance: float = typer.Option(0.0513, help="Sample to detector distance (m)."),
    pol_time: float = typer.Option(1.5, help="Seconds a polarization change takes."),
    interface: str = typer.Option("127.0.0.1", help="Address to serve on."),
) -> None:
    """Serve motors, monochromator/undulator, shutter, I0 and the sCMOS camera until Ctrl-C.

    The camera computes every frame from the physics of the current stage position,
    energy, polarization and zone plate z, and writes HDF5 files like areaDetector.
    """
    from simulators.samples import SAMPLES

    require_finite(energy=energy, flux=flux, area=area, distance=distance, pol_time=pol_time)
    if not re.fullmatch(r"[A-Za-z0-9_:\-.]+", prefix):
        fail(f"prefix {prefix!r} may contain only letters, digits and _ : - .")
    if sample not in SAMPLES:
        fail(f"unknown sample {sample!r}: use one of {', '.join(SAMPLES)}")
    if port is not None and not 1024 <= port <= 65535:
        fail(f"port must be within 1024..65535, got {port}")
    if not 100 <= energy <= 2000:
        fail(f"energy must be within 100..2000 eV, got {energy}")
    if flux <= 0 or area <= 0 or pol_time < 0:
        fail("flux and area must be > 0 and pol-time >= 0")
    if not 0.03 <= distance <= 0.2:
        fail(f"distance must be within 0.03..0.2 m, got {distance}")
    from simulators.ioc.beamline import run_ioc

    typer.echo(f"serving the beamline as {prefix}* on {interface} (Ctrl-C to stop)", err=True)
    run_ioc(
        prefix,
        port=port,
        interfaces=(interface,),
        sample=sample,
        seed=seed,
        energy_ev=energy,
        flux_ph_s=flux,
        area_m=area,
        distance_m=distance,
        pol_time_s=pol_time,
    )


def register(app: typer.Typer) -> None:
    app.command("ioc")(ioc)
