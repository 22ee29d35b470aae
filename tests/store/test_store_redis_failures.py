"""A Redis store on a bad day: each failure is one StoreUnavailable that says why and where.

Against real servers on loopback: one that wants a password, a port where nothing answers, a
server that is not Redis, a Redis out of memory (``maxmemory 1mb``, ``noeviction``) and a
read-only replica. Every message names the store by its redacted URL; the password never
appears in it, in its cause, or in anything logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial

import pytest
import trio
import trustme
from real_time import HANG_GUARD
from redis_servers import MISSING, RedisServer, free_port, redis_binary, redis_server

from stellate.adapters.store_redis import open_redis_store
from stellate.store.port import SnapshotWrite, StoreUnavailable, Unavailability
from stellate.text.urls import InvalidUrl

PASSWORD = "s3cret-Pa55"

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=MISSING)


@pytest.fixture(scope="module")
def guarded() -> Iterator[RedisServer]:
    with redis_server(password=PASSWORD) as server:
        yield server


async def unavailable(url: str, **kwargs: object) -> StoreUnavailable:
    with trio.fail_after(HANG_GUARD), pytest.raises(StoreUnavailable) as caught:
        async with open_redis_store(url, io_timeout=5.0, **kwargs):  # type: ignore[arg-type]
            pass
    return caught.value


def assert_safe(error: StoreUnavailable, caplog: pytest.LogCaptureFixture) -> None:
    shown = [str(error), error.store, repr(error.__cause__), caplog.text]
    assert not any(PASSWORD in text for text in shown)


async def test_a_wrong_password_is_an_authentication_failure_naming_the_store(
    guarded: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{guarded.port}/0"
    error = await unavailable(url)
    assert error.kind is Unavailability.AUTHENTICATION
    assert error.store == f"redis://***@127.0.0.1:{guarded.port}/0"
    assert str(error).startswith(f"fleet store redis://***@127.0.0.1:{guarded.port}/0: ")
    assert "password" in str(error)
    assert_safe(error, caplog)


async def test_no_password_for_a_store_that_wants_one(guarded: RedisServer) -> None:
    error = await unavailable(guarded.url(with_password=False))
    assert error.kind is Unavailability.AUTHENTICATION


async def test_the_password_given_apart_from_the_url_is_used(guarded: RedisServer) -> None:
    async with open_redis_store(guarded.url(with_password=False), password=PASSWORD) as store:
        assert (await store.join("m1", 15)).members[0].manager == "m1"
        assert store.name == f"redis://127.0.0.1:{guarded.port}/0"


async def test_a_port_where_nothing_answers_is_unreachable() -> None:
    error = await unavailable(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    assert error.kind is Unavailability.UNREACHABLE
    assert PASSWORD not in str(error)


async def test_something_that_is_not_redis(caplog: pytest.LogCaptureFixture) -> None:
    async def http_only(stream: trio.SocketStream) -> None:
        await stream.receive_some(1024)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, http_only, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        error = await unavailable(f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
        nursery.cancel_scope.cancel()
    assert error.kind is Unavailability.NOT_A_STORE
    assert "Redis" in str(error)
    assert_safe(error, caplog)


async def test_a_store_out_of_memory_refuses_writes_clearly() -> None:
    # The data is written first and the limit lowered under it afterwards: had the limit been
    # reached by writing, the refused write's own buffers would count, and once its connection
    # closed the store could fall back under the limit and take the next manager's probe.
    with redis_server("--maxmemory-policy", "noeviction") as server:
        async with open_redis_store(server.url(), check=False) as store:
            big = "x" * 100_000
            for index in range(30):  # 3 MB of snapshots, three times the limit set below
                (lease,) = (await store.claim("m1", [f"u{index}"], 15)).granted
                await store.write_snapshots([SnapshotWrite(lease, f"d{index}", big)])
            await store._client.config_set({"maxmemory": "1mb"})
            with pytest.raises(StoreUnavailable) as caught:
                await store.write_snapshots([SnapshotWrite(lease, "d-next", big)])
            assert caught.value.kind is Unavailability.OUT_OF_MEMORY
            assert "maxmemory" in str(caught.value)
        error = await unavailable(server.url())  # and a manager starting now is told at once
        assert error.kind is Unavailability.OUT_OF_MEMORY


async def test_a_read_only_replica_is_refused_at_start() -> None:
    with (
        redis_server() as primary,
        redis_server("--replicaof", "127.0.0.1", str(primary.port)) as replica,
    ):
        error = await unavailable(replica.url())
    assert error.kind is Unavailability.READ_ONLY
    assert "primary" in str(error)


async def test_a_store_that_goes_away_and_comes_back() -> None:
    with redis_server() as server:
        url = server.url()
        async with open_redis_store(url) as store:
            await store.join("m1", 15)
            port = server.port
    # The server is gone; the store object answers with StoreUnavailable, not a crash.
    async with open_redis_store(url, check=False) as store:
        with pytest.raises(StoreUnavailable) as caught:
            await store.renew("m1", [], 15)
        assert caught.value.kind is Unavailability.UNREACHABLE
        assert str(port) in str(caught.value)


async def test_a_malformed_url_is_refused_before_connecting() -> None:
    with pytest.raises(InvalidUrl) as caught:
        async with open_redis_store(f"redis://:{PASSWORD}@127.0.0.1:0/zero"):
            pass
    assert PASSWORD not in str(caught.value)
    assert "port" in str(caught.value) and "database" in str(caught.value)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("redis-tls")
    paths = tuple(str(folder / name) for name in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(paths[0])
    cert.private_key_pem.write_to_path(paths[1])
    ca.cert_pem.write_to_path(paths[2])
    return paths  # type: ignore[return-value]


async def test_rediss_with_the_ca_file_connects(tls_files: tuple[str, str, str]) -> None:
    with redis_server(tls=tls_files) as server:
        url = f"rediss://127.0.0.1:{server.port}/0"
        async with open_redis_store(url, cafile=tls_files[2]) as store:
            assert (await store.join("m1", 15)).members[0].manager == "m1"


async def test_rediss_without_the_ca_says_the_certificate_was_refused(
    tls_files: tuple[str, str, str],
) -> None:
    with redis_server(tls=tls_files) as server:
        error = await unavailable(f"rediss://127.0.0.1:{server.port}/0")
    assert error.kind is Unavailability.UNREACHABLE
    assert "(TLS: self-signed certificate" in str(error)
    assert "store.cafile" in str(error)


async def test_tokens_keep_growing_after_redis_lost_its_data() -> None:
    # The counter is seeded from the server's clock (microseconds) whenever it is missing, so
    # a Redis that restarted empty still hands out larger tokens than before.
    with redis_server() as server:
        async with open_redis_store(server.url()) as store:
            (before,) = (await store.claim("m1", ["u1"], 15)).granted
            await store._client.flushdb()
            (after,) = (await store.claim("m2", ["u1"], 15)).granted
    assert after.token > before.token
