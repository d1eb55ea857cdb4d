"""``python -m services.worker [--config FILE] [--tiled-uri URI] [--redo]``: run the worker."""

from __future__ import annotations

import argparse
import logging
import sys

from services.worker.config import load_settings
from services.worker.service import Worker


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the worker until interrupted; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m services.worker", description=__doc__)
    parser.add_argument("--config", default=None, help="YAML or TOML settings file")
    parser.add_argument("--tiled-uri", default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--algorithm", default=None)
    parser.add_argument("--redo", action="store_true", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request: noise
    try:
        settings = load_settings(
            args.config,
            tiled_uri=args.tiled_uri,
            tiled_api_key=args.api_key,
            algorithm=args.algorithm,
            redo=args.redo,
        )
        worker = Worker(settings)
    except ValueError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
