"""Prometheus metrics of an agent server: ``GET /metrics`` on its port.

The server's hot paths only add to plain integers (``ServerCounts`` in its sessions,
``ListenerStats`` in its listener); :class:`ServerCollector` turns them and the live state
(connections, registry) into metric families when Prometheus asks, with ``prometheus_client``'s
own types and text exposition. So a scrape costs the server one walk over its counts, and a
heartbeat costs one integer addition, whether anybody scrapes or not.

An application that embeds an :class:`~stellate.server.AgentServer` and has its own registry
registers the collector there::

    registry.register(ServerCollector(server))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Protocol, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..adapters.http_front import HandshakeFailure
from ..adapters.ws_server import HttpRequest, HttpResponse, HttpRoute, ListenerStats
from ..protocol.messages import ClientType
from ..protocol.registry import ClientRegistry
from ..protocol.rejections import RejectionKind
from ..protocol.server_counts import FrameRefusal, ServerCounts


class ServerView(Protocol):
    """What the collector reads of an agent server (``AgentServer`` is one): its plain counts
    and live state, so the metrics depend on the server's figures, not on the server."""

    @property
    def connections(self) -> int: ...
    @property
    def unregistered(self) -> int: ...

    registry: ClientRegistry
    listener_stats: ListenerStats
    counts: ServerCounts | None


__all__ = ["PREFIX", "ServerCollector", "metrics_route"]

#: Every metric of the agent server starts with this.
PREFIX = "stellate_server"


class ServerCollector:
    """A ``prometheus_client`` collector reading one :class:`~stellate.server.AgentServer`.

    Every label value a metric can take is listed (with 0) from the first scrape on, so a
    dashboard's series exist before the first event of their kind.
    """

    def __init__(self, server: ServerView, prefix: str = PREFIX) -> None:
        self._server = server
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        server, p = self._server, self._prefix
        stats = server.listener_stats
        yield GaugeMetricFamily(
            f"{p}_connections",
            "WebSocket connections held (registered or not).",
            value=server.connections,
        )
        yield GaugeMetricFamily(
            f"{p}_connections_unregistered",
            "WebSocket connections that have not registered (yet).",
            value=server.unregistered,
        )
        yield GaugeMetricFamily(
            f"{p}_sockets_open",
            "TCP connections open: handshaking, HTTP requests and WebSockets.",
            value=stats.open,
        )
        now_registered = dict.fromkeys(ClientType, 0)
        for entry in server.registry:
            now_registered[entry.client_type] += 1
        yield _family(
            GaugeMetricFamily(
                f"{p}_clients_registered",
                "Clients registered now, by type (device, constellation).",
                labels=["client_type"],
            ),
            [((t.value,), n) for t, n in now_registered.items()],
        )
        yield from self._counts()
        counters: list[tuple[str, str, list[str], Iterable[tuple[tuple[str, ...], float]]]] = [
            (
                "handshake_failures",
                "Connections that ended without a WebSocket or a successful HTTP answer.",
                ["reason"],
                [((f.value,), stats.failures[f]) for f in HandshakeFailure],
            ),
            (
                "accept_errors",
                "Accepts that failed for want of resources (EMFILE...), by errno.",
                ["errno"],
                [((name,), n) for name, n in sorted(stats.accept_errors.items())],
            ),
            (
                "http_requests",
                "Plain HTTP requests answered, by path (unknown paths: other) and status.",
                ["path", "status"],
                [((path, str(code)), n) for (path, code), n in sorted(stats.http.items())],
            ),
        ]
        for name, documentation, labels, samples in counters:
            yield _family(CounterMetricFamily(f"{p}_{name}", documentation, labels=labels), samples)
        yield CounterMetricFamily(
            f"{p}_received_bytes",
            "Bytes received on every connection (handshakes, frames, TLS records).",
            value=stats.traffic.received,
        )
        yield CounterMetricFamily(
            f"{p}_sent_bytes",
            "Bytes sent on every connection (handshakes, frames, TLS records).",
            value=stats.traffic.sent,
        )

    def _counts(self) -> Iterator[Metric]:
        counts, p = self._server.counts, self._prefix
        if counts is None:
            return
        yield CounterMetricFamily(
            f"{p}_heartbeats", "Heartbeats answered.", value=counts.heartbeats
        )
        auth = self._server.listener_stats.failures[HandshakeFailure.BAD_TOKEN]
        rejected = {kind: counts.rejected[kind] for kind in RejectionKind}
        rejected[RejectionKind.AUTH] += auth
        counters: list[tuple[str, str, str, Iterable[tuple[StrEnum, int]]]] = [
            (
                "registrations",
                "Registrations accepted, by client type.",
                "client_type",
                [(t, counts.registered[t]) for t in ClientType],
            ),
            (
                "registrations_rejected",
                "Registrations refused, by the kind a client reads from the refusal "
                "(auth: refused at the handshake for the key).",
                "kind",
                rejected.items(),
            ),
            (
                "departures",
                "Registered clients gone (closed, lost, lease expired, replaced), by type.",
                "client_type",
                [(t, counts.departed[t]) for t in ClientType],
            ),
            (
                "frames_refused",
                "Frames of registered clients refused, by reason.",
                "reason",
                [(r, counts.refused[r]) for r in FrameRefusal],
            ),
        ]
        for name, documentation, label, samples in counters:
            yield _family(
                CounterMetricFamily(f"{p}_{name}", documentation, labels=[label]),
                [((key.value,), n) for key, n in samples],
            )


_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily)


def _family(family: _Family, samples: Iterable[tuple[tuple[str, ...], float]]) -> _Family:
    for labels, value in samples:
        family.add_metric(list(labels), value)
    return family


def metrics_route(server: ServerView) -> HttpRoute:
    """The ``/metrics`` route: the server's collector in a registry of its own."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServerCollector(server))

    def metrics(_request: HttpRequest) -> HttpResponse:
        return HttpResponse(generate_latest(registry), CONTENT_TYPE_LATEST)

    return metrics
