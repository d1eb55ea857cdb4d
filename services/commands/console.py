"""``sptycho console``: IPython with the RunEngine, the devices and the plans ready."""

from __future__ import annotations

from pathlib import Path

import typer

from services.errors import fail
from services.validation import tiled_problem

BANNER = """sptycho beamline console
  RE          RunEngine (documents go to Tiled: {uri})
  bl          devices: bl.sample, bl.zp, bl.osa, bl.optics (energy, spot), bl.undulator,
              bl.shutter, bl.monitor, bl.camera
  plans       dark_frames, defocused_raster, spectro_stack; RasterParams, StackParams
  tiled       the Tiled client (tiled[uid]["primary"]...)
Example: RE(spectro_stack(bl, dict(energies=[190, 192], polarizations=["LH", "LV"])))
"""


def console(
    prefix: str = typer.Option("SIM:", help="IOC prefix of the beamline PVs."),
    tiled_uri: str = typer.Option(None, help="Tiled server; the embedded one when omitted."),
    api_key: str = typer.Option(None, envvar="SPTYCHO_TILED_API_KEY", help="Tiled API key."),
    data_dir: Path = typer.Option(Path("sptycho-data"), help="Frames (and embedded Tiled)."),
) -> None:
    """Open IPython with ``RE``, ``bl`` (devices), the plans and the Tiled client."""
    import IPython

    from plans import ptycho
    from plans.parameters import RasterParams, StackParams
    from services.session import open_session

    problem = tiled_uri and tiled_problem(tiled_uri, api_key)
    if problem:
        fail(problem)
    try:
        with open_session(prefix, tiled_uri=tiled_uri, api_key=api_key, data_dir=data_dir) as s:
            namespace = {
                "RE": s.RE,
                "bl": s.beamline,
                "tiled": s.client,
                "dark_frames": ptycho.dark_frames,
                "defocused_raster": ptycho.defocused_raster,
                "spectro_stack": ptycho.spectro_stack,
                "RasterParams": RasterParams,
                "StackParams": StackParams,
            }
            IPython.embed(
                user_ns=namespace, banner1=BANNER.format(uri=s.tiled_uri), colors="neutral"
            )
    except TimeoutError as err:
        fail(str(err))
    except RuntimeError as err:
        fail(str(err).splitlines()[0])


def register(app: typer.Typer) -> None:
    app.command("console")(console)
