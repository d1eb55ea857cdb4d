"""System tests: real IOC subprocess on loopback, real Tiled server, real RunEngine."""

from simulators.ioc.testing import configure_client

configure_client()  # before any PV is created in this process
