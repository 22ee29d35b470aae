"""The fleet store on Redis, through coredis (anyio-based: it runs on trio as it is).

Every compare-and-write is one Lua script, so it happens in one step on the server: a claim
takes a unit only if no lease holds it (Redis forgets a lease when its ``PX`` runs out), a
renewal or a release touches a lease only while it is still the current one, and a snapshot is
written only while the lease it names is still its unit's current one. Many units or devices go
in batches of :data:`BATCH` per script call, the calls of one operation pipelined (one round
trip).

Keys (all under one hash tag, so a Redis Cluster keeps them on one shard and scripts may touch
them together; ``P`` is the prefix, ``stellate`` by default):

* ``{P}:members`` — sorted set, manager → when its membership lease ends (server ms);
* ``{P}:renewed`` — hash, manager → when it last renewed (server ms);
* ``{P}:fence`` — the fencing counter. It only grows: ``INCR``, first seeded from the server's
  clock in microseconds, so tokens keep growing even if Redis lost its data in between;
* ``{P}:unit:UNIT`` — the lease: ``TOKEN:OWNER``, with a ``PX`` of the lease;
* ``{P}:snapshots`` — hash, device id → encoded snapshot.

Time is the server's (``TIME`` inside the scripts): every manager's lease runs on one clock.

Errors: anything coredis or the socket raises becomes one :class:`StoreUnavailable` naming the
store by its redacted URL and saying why (wrong password, nothing answering, not a Redis, out of
memory, read-only); the password never appears, not even inside the server's own text.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import coredis
import coredis.exceptions as redis_errors
from coredis.retry import NoRetryPolicy

from ..store.port import (
    Claimed,
    FleetView,
    Holder,
    Lease,
    ManagerIdInUse,
    Member,
    Renewal,
    SnapshotWrite,
    StoreUnavailable,
    Unavailability,
    Written,
)
from ..text.escape import escape_text
from ..text.redact import redact_text
from ..text.urls import parse_store_url

__all__ = ["BATCH", "RedisFleetStore", "open_redis_store", "unavailable"]

#: Units or devices per script call.
BATCH = 1000
#: Seconds to connect, and to wait for an answer, before the store counts as unreachable.
DEFAULT_TIMEOUT = 5.0

_T = TypeVar("_T")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The live members as a flat list: manager, age ms, expires-in ms, ...
_MEMBERS = """
local function members(zkey, hkey, now)
  local gone = redis.call('ZRANGEBYSCORE', zkey, '-inf', now)
  if #gone > 0 then
    redis.call('ZREM', zkey, unpack(gone))
    redis.call('HDEL', hkey, unpack(gone))
  end
  local live = redis.call('ZRANGE', zkey, 0, -1, 'WITHSCORES')
  local out = {}
  for i = 1, #live, 2 do
    local renewed = tonumber(redis.call('HGET', hkey, live[i]) or now)
    out[#out + 1] = live[i]
    out[#out + 1] = now - renewed
    out[#out + 1] = tonumber(live[i + 1]) - now
  end
  return out
end
"""

# KEYS: members, renewed. ARGV: manager, ttl ms. → {0, members} or {1, ms left} (id in use)
_JOIN = (
    _NOW
    + _MEMBERS
    + """
local listed = members(KEYS[1], KEYS[2], now)
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ends then return {1, tonumber(ends) - now} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now)
return {0, members(KEYS[1], KEYS[2], now)}
"""
)

# KEYS: members, renewed. ARGV: manager, ttl ms. → members
_MEMBERSHIP = (
    _NOW
    + _MEMBERS
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now)
return members(KEYS[1], KEYS[2], now)
"""
)

# KEYS: unit keys. ARGV: ttl ms, then each unit's expected value. → 1/0 per unit
_RENEW = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS: fence, unit keys. ARGV: owner, ttl ms. → per unit {1, token} or {0, value, ms left}
_CLAIM = """
local out = {}
for i = 2, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if held then
    out[i - 1] = {0, held, redis.call('PTTL', KEYS[i])}
  else
    if redis.call('EXISTS', KEYS[1]) == 0 then
      local t = redis.call('TIME')
      redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
    end
    local token = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[i], string.format('%d', token) .. ':' .. ARGV[1], 'PX', ARGV[2])
    out[i - 1] = {1, token}
  end
end
return out
"""

# KEYS: unit keys. ARGV: each unit's expected value.
_RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then redis.call('DEL', KEYS[i]) end
end
return 0
"""

# KEYS: snapshots, unit keys. ARGV: n units, each unit's expected value, then per write:
# unit index (1-based; negative: delete), device id, data. → 1/0 per write
_WRITE = """
local n = tonumber(ARGV[1])
local ok = {}
for i = 1, n do ok[i] = redis.call('GET', KEYS[i + 1]) == ARGV[i + 1] end
local out = {}
for j = n + 2, #ARGV, 3 do
  local index = tonumber(ARGV[j])
  if ok[math.abs(index)] then
    if index < 0 then
      redis.call('HDEL', KEYS[1], ARGV[j + 1])
    else
      redis.call('HSET', KEYS[1], ARGV[j + 1], ARGV[j + 2])
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""

# KEYS: members, renewed. → members (read-only but tidies expired entries)
_LIST = _NOW + _MEMBERS + "\nreturn members(KEYS[1], KEYS[2], now)\n"


def _value(lease: Lease) -> str:
    return f"{lease.token}:{lease.owner}"


def _lease(unit: str, value: str) -> Lease:
    token, _, owner = value.partition(":")
    return Lease(unit, owner, int(token))


def _chunks(items: Sequence[_T], size: int = BATCH) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _members(flat: Sequence[Any]) -> tuple[Member, ...]:
    found = [
        Member(str(flat[i]), int(flat[i + 1]) / 1000, int(flat[i + 2]) / 1000)
        for i in range(0, len(flat), 3)
    ]
    return tuple(sorted(found, key=lambda member: member.manager))


def unavailable(exc: BaseException, store: str, secrets: Collection[str] = ()) -> StoreUnavailable:
    """The one error a failure of the Redis store becomes: what kind, and its text made safe."""
    text = str(exc) or type(exc).__name__
    # A pipeline's error quotes the whole command (keys, arguments) before the server's answer.
    text = text.rpartition(" caused error: ")[2]
    detail = escape_text(redact_text(text, secrets), limit=300)
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        kind = Unavailability.AUTHENTICATION
        detail = "the store refused the credentials (check the password) — " + detail
    elif isinstance(exc, redis_errors.ReadOnlyError) or text.startswith(_READ_ONLY):
        kind = Unavailability.READ_ONLY
        detail = "it is a read-only replica: point store.url at the primary — " + detail
    elif isinstance(exc, redis_errors.ResponseError) and text.startswith("OOM"):
        kind = Unavailability.OUT_OF_MEMORY
        detail = "it refuses writes (maxmemory reached) — " + detail
    elif isinstance(exc, redis_errors.ProtocolError | redis_errors.InvalidResponse):
        kind = Unavailability.NOT_A_STORE
        detail = "what answers there does not speak Redis's protocol — " + detail
    elif isinstance(exc, redis_errors.ConnectionError | OSError | TimeoutError):
        kind = Unavailability.UNREACHABLE
        tls = _tls_cause(exc)
        if tls is not None:
            reason = escape_text(getattr(tls, "verify_message", None) or str(tls), limit=200)
            detail = (
                f"{detail} (TLS: {reason}; store.cafile names the CA that signs its certificate)"
            )
    else:
        kind = Unavailability.ERROR
    return StoreUnavailable(store, kind, detail)


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind a connection error, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(10):  # causes form a chain; a short one is all coredis makes
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


#: How Redis words a write refused by a read-only replica.
_READ_ONLY = ("READONLY", "You can't write against a read only replica")


class RedisFleetStore:
    """A :class:`~stellate.store.port.FleetStore` on Redis (open it with
    :func:`open_redis_store`)."""

    def __init__(
        self, client: coredis.Redis[str], name: str, prefix: str, secrets: Collection[str] = ()
    ) -> None:
        self._client = client
        self._name = name
        self._secrets = tuple(s for s in secrets if s)
        tag = "{" + prefix + "}"
        self._members_key = f"{tag}:members"
        self._renewed_key = f"{tag}:renewed"
        self._fence_key = f"{tag}:fence"
        self._unit_prefix = f"{tag}:unit:"
        self._snapshots_key = f"{tag}:snapshots"
        self._probe_key = f"{tag}:probe"
        self._join = client.register_script(_JOIN)
        self._membership = client.register_script(_MEMBERSHIP)
        self._renew = client.register_script(_RENEW)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._write = client.register_script(_WRITE)
        self._list = client.register_script(_LIST)

    @property
    def name(self) -> str:
        return self._name

    def _unit_key(self, unit: str) -> str:
        return self._unit_prefix + unit

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (redis_errors.RedisError, OSError, TimeoutError) as exc:
            raise unavailable(exc, self._name, self._secrets) from None

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers and accepts writes (a
        read-only replica and a store out of memory answer a ping, and refuse this)."""
        async with self._errors():
            await self._client.ping()
            await self._client.set(self._probe_key, "1", px=60_000)

    async def join(self, manager: str, ttl: float) -> Renewal:
        keys = [self._members_key, self._renewed_key]
        async with self._errors():
            answer: Any = await self._join(keys=keys, args=[manager, _ms(ttl)])
        status, payload = answer
        if int(status) == 1:
            raise ManagerIdInUse(self._name, manager, int(payload) / 1000)
        return Renewal(frozenset(), _members(payload))

    async def renew(self, manager: str, leases: Collection[Lease], ttl: float) -> Renewal:
        ordered = list(leases)
        ms = _ms(ttl)
        async with self._errors(), self._client.pipeline(transaction=False) as pipe:
            membership: Any = self._membership(
                keys=[self._members_key, self._renewed_key], args=[manager, ms], client=pipe
            )
            batches: list[Any] = [
                self._renew(
                    keys=[self._unit_key(lease.unit) for lease in batch],
                    args=[ms, *(_value(lease) for lease in batch)],
                    client=pipe,
                )
                for batch in _chunks(ordered)
            ]
        async with self._errors():
            members = _members(await membership)
            flags = [flag for request in batches for flag in await request]
        renewed = frozenset(lease.unit for lease, flag in zip(ordered, flags, strict=True) if flag)
        return Renewal(renewed, members)

    async def leave(self, manager: str) -> None:
        async with self._errors(), self._client.pipeline(transaction=False) as pipe:
            requests: list[Any] = [
                pipe.zrem(self._members_key, [manager]),
                pipe.hdel(self._renewed_key, [manager]),
            ]
        async with self._errors():
            for request in requests:
                await request

    async def claim(self, manager: str, units: Collection[str], ttl: float) -> Claimed:
        ordered = list(units)
        ms = _ms(ttl)
        async with self._errors(), self._client.pipeline(transaction=False) as pipe:
            batches: list[Any] = [
                self._claim(
                    keys=[self._fence_key, *(self._unit_key(unit) for unit in batch)],
                    args=[manager, ms],
                    client=pipe,
                )
                for batch in _chunks(ordered)
            ]
        async with self._errors():
            answers = [answer for request in batches for answer in await request]
        granted: list[Lease] = []
        taken: dict[str, Holder] = {}
        for unit, answer in zip(ordered, answers, strict=True):
            if int(answer[0]) == 1:
                granted.append(Lease(unit, manager, int(answer[1])))
            else:
                taken[unit] = Holder(_lease(unit, str(answer[1])), max(int(answer[2]), 0) / 1000)
        return Claimed(tuple(granted), taken)

    async def release(self, leases: Collection[Lease]) -> None:
        ordered = list(leases)
        async with self._errors(), self._client.pipeline(transaction=False) as pipe:
            requests: list[Any] = [
                self._release(
                    keys=[self._unit_key(lease.unit) for lease in batch],
                    args=[_value(lease) for lease in batch],
                    client=pipe,
                )
                for batch in _chunks(ordered)
            ]
        async with self._errors():
            for request in requests:
                await request

    async def write_snapshots(self, writes: Sequence[SnapshotWrite]) -> Written:
        requests: list[Any] = []
        async with self._errors(), self._client.pipeline(transaction=False) as pipe:
            for batch in _chunks(writes):
                index: dict[Lease, int] = {}
                args: list[str | int] = []
                for write in batch:
                    position = index.setdefault(write.lease, len(index) + 1)
                    deleting = write.data is None
                    args += [-position if deleting else position, write.device_id, write.data or ""]
                keys = [self._snapshots_key, *(self._unit_key(lease.unit) for lease in index)]
                head: list[str | int] = [len(index), *(_value(lease) for lease in index)]
                requests.append(self._write(keys=keys, args=[*head, *args], client=pipe))
        async with self._errors():
            flags = [flag for request in requests for flag in await request]
        accepted = tuple(w.device_id for w, flag in zip(writes, flags, strict=True) if flag)
        refused = tuple(w.device_id for w, flag in zip(writes, flags, strict=True) if not flag)
        return Written(accepted, refused)

    async def read_snapshots(self, device_ids: Collection[str]) -> Mapping[str, str]:
        ordered = list(device_ids)
        async with self._errors(), self._client.pipeline(transaction=False) as pipe:
            requests: list[Any] = [
                pipe.hmget(self._snapshots_key, list(batch)) for batch in _chunks(ordered)
            ]
        async with self._errors():
            values = [value for request in requests for value in await request]
        return {d: v for d, v in zip(ordered, values, strict=True) if v is not None}

    async def view(self) -> FleetView:
        async with self._errors():
            members = _members(
                await self._list(keys=[self._members_key, self._renewed_key], args=[])
            )
            keys = [key async for key in self._client.scan_iter(match=self._unit_prefix + "*")]
            snapshots = await self._client.hgetall(self._snapshots_key)
        holders: dict[str, Holder] = {}
        for batch in _chunks(keys):
            async with self._errors(), self._client.pipeline(transaction=False) as pipe:
                requests = [(pipe.get(key), pipe.pttl(key)) for key in batch]
            async with self._errors():
                for key, (value, ttl) in zip(batch, requests, strict=True):
                    held, left = await value, await ttl
                    if held is not None and left > 0:
                        unit = key.removeprefix(self._unit_prefix)
                        holders[unit] = Holder(_lease(unit, held), left / 1000)
        return FleetView(members, dict(sorted(holders.items())), dict(sorted(snapshots.items())))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@asynccontextmanager
async def open_redis_store(
    url: str,
    *,
    password: str | None = None,
    cafile: str | None = None,
    prefix: str = "stellate",
    io_timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> AsyncIterator[RedisFleetStore]:
    """Connect to the Redis at ``url`` (``redis://`` or ``rediss://``) and yield the store.

    Args:
        url: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``.
        password: used when the URL carries none (``STELLATE_STORE_PASSWORD``, a file).
        cafile: CA certificates that sign a ``rediss://`` server's certificate.
        prefix: the keys' prefix (several fleets may share one Redis under different ones).
        io_timeout: seconds to connect, or to wait for an answer.
        check: ping the store (and run one script) before yielding.

    Raises:
        InvalidUrl: the URL is malformed (the message shows it redacted).
        StoreUnavailable: ``check`` failed: wrong password, nothing there, not a Redis,
            out of memory, read-only.
    """
    parsed = parse_store_url(url)
    secret = parsed.password or password
    context: ssl.SSLContext | None = None
    if parsed.tls:
        context = ssl.create_default_context(cafile=cafile)
    client: coredis.Redis[str] = coredis.Redis(
        host=parsed.host,
        port=parsed.port,
        db=parsed.db,
        username=parsed.username,
        password=secret,
        decode_responses=True,
        connect_timeout=io_timeout,
        stream_timeout=io_timeout,
        ssl=parsed.tls,
        ssl_context=context,
        retry_policy=NoRetryPolicy(),
        client_name="stellate",
    )
    store = RedisFleetStore(client, parsed.safe, prefix, [secret] if secret else [])
    try:
        async with client:
            if check:
                await store.ping()
            yield store
    except BaseExceptionGroup as group:
        # coredis runs its pool in a nursery of its own: an error from the body comes out
        # wrapped. One error is given back as itself, as if there were no nursery.
        leaves = list(_leaves(group))
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
