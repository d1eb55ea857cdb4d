"""``python -m simulators.ioc``: serve the simulated beamline (same options as ``sptycho ioc``)."""

from __future__ import annotations

import argparse

from simulators.ioc.beamline import run_ioc


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve the IOC until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m simulators.ioc", description=__doc__)
    parser.add_argument("--prefix", default="SIM:")
    parser.add_argument("--sample", default="bn-bamboo")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--energy", type=float, default=192.0, help="initial energy (eV)")
    parser.add_argument("--flux", type=float, default=1e8, help="flux at 400 mA (ph/s)")
    parser.add_argument("--area", type=float, default=4e-6, help="sample area side (m)")
    parser.add_argument("--distance", type=float, default=0.0513, help="detector distance (m)")
    parser.add_argument("--pol-time", type=float, default=1.5, help="polarization change (s)")
    args = parser.parse_args(argv)
    run_ioc(
        args.prefix,
        port=args.port,
        sample=args.sample,
        seed=args.seed,
        energy_ev=args.energy,
        flux_ph_s=args.flux,
        area_m=args.area,
        distance_m=args.distance,
        pol_time_s=args.pol_time,
    )


if __name__ == "__main__":
    main()
