"""Settings of the web API, from defaults < environment (``SPTYCHO_API_*``) < arguments."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """What the API serves and who may act.

    Attributes
    ----------
    tiled_uri : the Tiled server the runs and reconstructions are read from
    tiled_api_key : its API key
    key : the operators' API key (``SPTYCHO_API_KEY``): requests that carry it in the
        ``X-API-Key`` header may start, pause, resume and abort scans. ``None``: nobody may
        (the page is read-only)
    host, port : where ``sptycho web`` listens
    cors_origins : origins allowed by CORS; empty (the default) turns CORS off
    poll_interval_s : how often Tiled is asked what is new for the WebSocket updates
    watch_runs : how many of the newest runs are followed live
    results_key : container, inside each run, that holds its reconstructions
    tiled_timeout_s : read and write timeout of every request to Tiled (connecting: 5 s);
        what Tiled does not answer in time (after the client's retries) is a 503
    max_body_bytes : largest request body accepted (bytes); a bigger one is refused with
        413, from its ``Content-Length`` before reading, or once that many bytes of a
        chunked body have arrived
    queue_server : the beamline's bluesky queue server, whose RunEngine then runs the page's
        scans (:mod:`services.api.queue_control`): its 0MQ control socket
        (``tcp://host:60615``) or its HTTP server (``http://host:60610``). ``None`` (the
        default): scans run on the page's own RunEngine (``sptycho web --beamline``, the demo)
    queue_api_key : the HTTP server's key (``QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY``)
    """

    model_config = SettingsConfigDict(env_prefix="SPTYCHO_API_", extra="ignore")

    tiled_uri: str | None = None
    tiled_api_key: str | None = None
    key: str | None = Field(None, min_length=8)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    poll_interval_s: float = Field(0.5, gt=0.0, le=30.0)
    watch_runs: int = Field(3, ge=1, le=100)
    results_key: str = Field("recon", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    tiled_timeout_s: float = Field(30.0, gt=0.0, le=600.0)
    max_body_bytes: int = Field(1_000_000, ge=1)
    queue_server: str | None = Field(None, pattern=r"^(tcp|https?)://\S+$")
    queue_api_key: str | None = None
