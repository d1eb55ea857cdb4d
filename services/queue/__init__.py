"""The beamline in the bluesky queue server (``start-re-manager``).

- :mod:`services.queue.plans`: the ptychography plans as generator functions with plain JSON
  keyword parameters, the form the queue server lists, validates and calls.
- :mod:`services.queue.environment`: settings (``SPTYCHO_*`` environment variables) and the
  namespace of the queue server's worker: ``RE`` writing every run to Tiled, the devices,
  the plans.
- :mod:`services.queue.startup`: the startup module
  (``start-re-manager --startup-module services.queue.startup``); importing it connects to
  the beamline and to Tiled, so only the queue server imports it.
"""
