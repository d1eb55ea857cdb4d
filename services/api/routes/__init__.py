"""The web API's routers, one per concern; :func:`services.api.app.create_app` includes them.

=========  ====================  ==========================================================
module     prefix                routes
=========  ====================  ==========================================================
page       (none)                the live page, its Plotly bundle, ``/api/health``
runs       ``/api/runs``         the run list, a run's detail, positions, result metadata
pictures   ``/api/runs``         a reconstruction's amplitude, phase or probe picture
stack      ``/api/runs``         the stack analysis: metadata, map pictures, spectra
scan       ``/api/scan``         the scan controller's state and the operators' commands
dose       ``/api/dose``         the samples' accumulated dose maps (the dose ledger)
live       (none)                the ``/ws`` WebSocket of live messages
=========  ====================  ==========================================================

Each module exposes ``router`` (an :class:`fastapi.APIRouter` that carries its prefix) and
gets the app's shared objects through :mod:`services.api.deps`.
"""

from services.api.routes import dose, live, page, pictures, runs, scan, stack

ROUTERS = (
    page.router,
    runs.router,
    pictures.router,
    stack.router,
    scan.router,
    dose.router,
    live.router,
)

__all__ = ["ROUTERS"]
