"""The browser-facing service: REST + WebSocket API and the live page (FastAPI).

:func:`services.api.app.create_app` builds the app; ``sptycho web`` serves it.
"""
