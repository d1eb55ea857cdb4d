"""``sptycho web``, ``serve`` and ``import`` against a Tiled server they cannot use
(unreachable, malformed URI, wrong API key): one ``error:`` line, exit status 2, at once."""

import time

import pytest
from typer.testing import CliRunner

from recon.cxi import write_cxi
from services.cli import app
from services.tiled_server import TiledServer, free_port


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "Retrying" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    with TiledServer(tmp_path_factory.mktemp("tiled")) as server:
        yield server


@pytest.fixture(scope="module")
def cxi(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "recon"))
    from synthetic_data import make, ptychogram

    path = tmp_path_factory.mktemp("cxi") / "scan.cxi"
    return write_cxi(path, ptychogram(make(n_side=3)), compression=None)


def _commands(uri: str, key: str | None, cxi) -> dict[str, list[str]]:
    keys = lambda opt: [opt, key] if key else []  # noqa: E731
    return {
        "web": ["web", "--tiled-uri", uri, *keys("--tiled-api-key"), "--port", str(free_port())],
        "serve": ["serve", "--tiled-uri", uri, *keys("--api-key")],
        "import": ["import", "cxi", str(cxi), "--tiled", uri, *keys("--api-key")],
    }


@pytest.mark.parametrize("command", ["web", "serve", "import"])
@pytest.mark.parametrize(
    "uri, text",
    [
        ("not a uri", "malformed Tiled URI"),
        ("ftp://host/", "malformed Tiled URI"),
        ("http://127.0.0.1:99999", "malformed Tiled URI"),
        ("http://", "malformed Tiled URI"),
        ("unreachable", "cannot reach Tiled at http://127.0.0.1:"),
    ],
)
def test_unusable_tiled_uri_is_one_line(command, uri, text, cxi):
    if uri == "unreachable":
        uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    line = one_error_line(invoke(*_commands(uri, None, cxi)[command]))
    assert text in line, line
    assert time.monotonic() - t0 < 15  # no retries for tens of seconds


@pytest.mark.parametrize("command", ["web", "serve", "import"])
@pytest.mark.parametrize("key", ["0123456789abcdef", "not-the-key", None])
def test_wrong_tiled_api_key_is_one_line(command, key, tiled, cxi):
    line = one_error_line(invoke(*_commands(tiled.uri, key, cxi)[command]))
    expected = "refused the API key" if key else "needs an API key"
    assert f"Tiled at {tiled.uri} {expected}" in line, line


def test_web_refuses_a_port_in_use(tiled):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(
            invoke(
                "web",
                "--tiled-uri",
                tiled.uri,
                "--tiled-api-key",
                tiled.api_key,
                "--port",
                str(port),
            )
        )
    assert f"cannot listen on 127.0.0.1:{port}" in line
