"""``sptycho ioc``: help and one-line errors on bad input (registered on a bare typer app)."""

import typer
from typer.testing import CliRunner

from services.commands import ioc


def _app() -> typer.Typer:
    app = typer.Typer()
    ioc.register(app)

    @app.command("noop", hidden=True)
    def noop() -> None:  # a second command keeps "ioc" a subcommand
        pass

    return app


def test_help_lists_the_options():
    out = CliRunner().invoke(_app(), ["ioc", "--help"])
    assert out.exit_code == 0
    for option in ("--prefix", "--sample", "--port", "--seed", "--pol-time"):
        assert option in out.output


def test_bad_input_fails_with_one_line():
    runner = CliRunner()
    cases = [
        (["--sample", "cheese"], "unknown sample"),
        (["--port", "80"], "port"),
        (["--prefix", "bad prefix"], "prefix"),
        (["--energy", "50"], "energy"),
    ]
    for args, words in cases:
        out = runner.invoke(_app(), ["ioc", *args])
        assert out.exit_code == 2, out.output
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
