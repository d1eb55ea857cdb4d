"""Startup module of the bluesky queue server.

``start-re-manager --startup-module services.queue.startup`` (see
``deploy/queueserver/config.yml``) imports it in a fresh worker process each time the
environment is opened. The import connects to Tiled and to the beamline with the settings of
the ``SPTYCHO_*`` environment variables (:mod:`services.queue.environment`) and leaves in
this module's globals what the queue server looks for: ``RE``, the devices and the plans.

A beamline that wants more plans or devices writes its own startup script instead::

    from services.queue.environment import build_namespace

    globals().update(build_namespace())
    # ... more devices and plans here

and passes it with ``--startup-script``.
"""

from services.queue.environment import build_namespace as _build_namespace

globals().update(_build_namespace())
