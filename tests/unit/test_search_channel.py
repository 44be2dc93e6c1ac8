"""The search channel between routers and shard replicas: results, typed errors, bad frames, broken ends.

No Ray here: the server answers with a real in-memory shard index, the client is the router's own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest

from actors.gallery_shard import ShardConfig, ShardIndex, normalise
from actors.search_channel import HEADER, MAX_FRAME_BYTES, ChannelBroken, SearchChannel, SearchEndpoint, SearchServer
from facewatch import errors
from facewatch.errors import AuthFailed, BadParam, FacewatchError

DIM = 16


@pytest.fixture(scope="module")
def index() -> ShardIndex:
    rng = np.random.default_rng(0)
    vectors = normalise(rng.standard_normal((500, DIM), dtype=np.float32), DIM)
    ids = [f"c{i}" for i in range(500)]
    return ShardIndex.build(ShardConfig("chan", "m", DIM), ids, vectors, [{"camera_id": i % 4} for i in range(500)])


@pytest.fixture
def server(index: ShardIndex) -> Iterator[SearchServer]:
    running = SearchServer("127.0.0.1", index.search)
    yield running
    running.close()


def search(channel: SearchChannel, queries: np.ndarray, k: int = 5, **kwargs: Any) -> list[list[tuple[str, float]]]:
    async def go() -> list[list[tuple[str, float]]]:
        try:
            return await channel.search(queries, k, kwargs.get("min_score"), kwargs.get("filters"), 10)
        finally:
            channel.close()

    return asyncio.run(go())


def queries(count: int, seed: int = 1) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((count, DIM), dtype=np.float32), DIM)


def raw_exchange(endpoint: SearchEndpoint, frames: list[bytes]) -> list[dict[str, Any] | None]:
    """Send frames on one plain socket; each reply, or None once the server has closed it."""
    replies: list[dict[str, Any] | None] = []
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        for frame in frames:
            try:
                sock.sendall(frame)
            except OSError:
                replies.append(None)
                continue
            try:
                head = stream.read(HEADER.size)
                body = stream.read(HEADER.unpack(head)[0]) if len(head) == HEADER.size else None
            except OSError:
                body = None
            replies.append(None if body is None else msgpack.unpackb(body, raw=False))
    return replies


def frame(message: Any) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def test_a_search_over_the_channel_answers_exactly_what_the_shard_answers(
    index: ShardIndex, server: SearchServer
) -> None:
    channel = SearchChannel(server.endpoint)
    batch = queries(7)
    assert search(channel, batch, 5) == index.search(batch, 5)
    filters = {"camera_id": [1, 3]}
    assert search(channel, batch, 9, min_score=0.1, filters=filters) == index.search(batch, 9, 0.1, filters)
    # NumPy values in filters (ids read from arrays) travel as plain numbers.
    assert search(channel, batch[:1], 3, filters={"camera_id": np.int64(2)}) == index.search(
        batch[:1], 3, filters={"camera_id": 2})


def test_concurrent_searches_each_get_their_own_answer(index: ShardIndex, server: SearchServer) -> None:
    channel = SearchChannel(server.endpoint)
    batch = queries(12, seed=2)

    async def all_at_once() -> list[list[list[tuple[str, float]]]]:
        try:
            return await asyncio.gather(*(channel.search(q[None], 4, None, None, 10) for q in batch))
        finally:
            channel.close()

    answers = asyncio.run(all_at_once())
    assert [a[0] for a in answers] == index.search(batch, 4)


def test_a_shard_error_comes_back_as_its_own_type(server: SearchServer) -> None:
    channel = SearchChannel(server.endpoint)
    with pytest.raises(BadParam) as failed:
        search(channel, queries(1), 5, filters={"unknown": 1})
    assert failed.value.param == "filters.unknown"
    with pytest.raises(BadParam):
        search(channel, queries(1), 5, filters={"camera_id": object()})  # refused before it is sent
    assert search(channel, queries(1), 1)  # the channel still works


def test_a_wrong_token_is_refused_and_the_connection_closed(server: SearchServer) -> None:
    stranger = SearchChannel(SearchEndpoint(server.endpoint.host, server.endpoint.port, "0" * 32))
    with pytest.raises(AuthFailed):
        search(stranger, queries(1))
    request = {"token": "guess", "queries": queries(1).tobytes(), "rows": 1, "dim": DIM, "k": 1}
    first, after = raw_exchange(server.endpoint, [frame(request), frame(request)])
    assert first is not None and first["error"]["code"] == "AUTH_FAILED"
    assert after is None
    assert search(SearchChannel(server.endpoint), queries(1), 1)


def test_malformed_frames_get_a_typed_answer_and_the_server_keeps_serving(
    index: ShardIndex, server: SearchServer
) -> None:
    token = server.endpoint.token
    good = {"token": token, "queries": queries(1).tobytes(), "rows": 1, "dim": DIM, "k": 2}
    garbage = HEADER.pack(3) + b"\xc1\xc1\xc1"  # 0xc1 is never used in msgpack
    wrong_shape = {**good, "rows": 2}
    missing = {"token": token, "rows": 1}
    not_a_map = frame([1, 2, 3])
    replies = raw_exchange(server.endpoint, [garbage, frame(wrong_shape), frame(missing), not_a_map, frame(good)])
    assert [r["error"]["code"] for r in replies[:4]] == ["BAD_PARAM"] * 4
    assert replies[4] is not None and replies[4]["ok"]
    assert [tuple(m) for m in replies[4]["matches"][0]] == index.search(queries(1), 2)[0]
    # A frame longer than the limit is answered, and the connection dropped before it is read.
    oversized, after = raw_exchange(server.endpoint, [HEADER.pack(MAX_FRAME_BYTES + 1), frame(good)])
    assert oversized is not None and oversized["error"]["code"] == "BAD_PARAM"
    assert after is None


def test_a_closed_endpoint_breaks_the_channel(index: ShardIndex) -> None:
    server = SearchServer("127.0.0.1", index.search)
    channel = SearchChannel(server.endpoint)

    async def twice() -> None:
        assert await channel.search(queries(1), 1, None, None, 10)  # leaves an open, idle connection
        server.close()
        with pytest.raises(ChannelBroken):
            await channel.search(queries(1), 1, None, None, 10)
        with pytest.raises(ChannelBroken):  # and a new connection is refused
            await channel.search(queries(1), 1, None, None, 10)

    asyncio.run(twice())


def test_a_search_that_takes_too_long_times_out_and_closes_its_connection() -> None:
    def slow(q: np.ndarray, k: int, min_score: float | None, filters: Any) -> list[list[tuple[str, float]]]:
        import time

        time.sleep(1.0)
        return [[("late", 1.0)]]

    server = SearchServer("127.0.0.1", slow)
    channel = SearchChannel(server.endpoint)

    async def go() -> None:
        with pytest.raises(TimeoutError):
            await channel.search(queries(1), 1, None, None, 0.2)
        assert channel.idle_connections() == 0  # the late answer must not be read by the next search
        assert await channel.search(queries(1), 1, None, None, 10) == [[("late", 1.0)]]

    try:
        asyncio.run(go())
    finally:
        server.close()


@pytest.mark.parametrize("kind", [k for k in vars(errors).values()
                                  if isinstance(k, type) and issubclass(k, FacewatchError)])
def test_every_error_type_survives_the_trip_as_a_dict(kind: type[FacewatchError]) -> None:
    original = kind("it went wrong", param="field", missing_shards=[1])
    copy = FacewatchError.from_dict(original.to_dict())
    assert type(copy) is kind
    assert (copy.reason, copy.param, copy.extra, copy.code) == ("it went wrong", "field", {"missing_shards": [1]},
                                                               kind.code)


def test_an_unknown_error_code_keeps_its_code() -> None:
    copy = FacewatchError.from_dict({"code": "SOMETHING_NEW", "reason": "?"})
    assert type(copy) is FacewatchError and copy.code == "SOMETHING_NEW" and copy.to_dict()["code"] == "SOMETHING_NEW"


def test_a_failing_search_is_reported_as_internal_and_the_server_keeps_serving() -> None:
    calls: list[int] = []

    def flaky(q: np.ndarray, k: int, min_score: float | None, filters: Any) -> list[list[tuple[str, float]]]:
        calls.append(k)
        if len(calls) == 1:
            raise ValueError("index corrupted")  # a bug, not a bad request
        return [[("ok", 0.5)]]

    server = SearchServer("127.0.0.1", flaky)
    channel = SearchChannel(server.endpoint)

    async def go() -> None:
        with pytest.raises(FacewatchError) as failed:
            await channel.search(queries(1), 1, None, None, 10)
        assert type(failed.value) is FacewatchError and failed.value.code == "INTERNAL"
        assert "index corrupted" in failed.value.reason
        assert channel.idle_connections() == 1  # the connection stays usable
        assert await channel.search(queries(1), 1, None, None, 10) == [[("ok", 0.5)]]

    try:
        asyncio.run(go())
    finally:
        server.close()
