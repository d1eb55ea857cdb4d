"""The test's own PostgreSQL and Redis: they serve on a private port and leave nothing."""

import socket

import pytest
from private_services import private_postgres, private_redis

pytestmark = pytest.mark.system


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_private_postgres_serves_a_new_cluster_and_removes_it():
    with private_postgres() as pg:
        assert pg.port != 5432 and _port_open(pg.port)
        pg.create_database("probe_db")
        names = pg.sql("select datname from pg_database").split()
        assert "probe_db" in names
        # a new cluster: only the three template/default databases and ours
        assert sorted(names) == ["postgres", "probe_db", "template0", "template1"]
        folder, port = pg.folder, pg.port
    assert not folder.exists()
    assert not _port_open(port)


def test_private_redis_is_empty_and_gone_after():
    import redis

    with private_redis() as rds:
        assert rds.port != 6379
        r = redis.Redis.from_url(rds.url(2))
        assert r.dbsize() == 0
        r.set("k", "v")
        assert r.get("k") == b"v"
        port = rds.port
        r.close()
    assert not _port_open(port)
