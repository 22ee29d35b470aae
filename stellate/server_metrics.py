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
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .adapters.http_front import HandshakeFailure
from .adapters.ws_server import HttpRequest, HttpResponse, HttpRoute
from .protocol.messages import ClientType
from .protocol.rejections import RejectionKind
from .protocol.server_counts import FrameRefusal

if TYPE_CHECKING:
    from .server import AgentServer

__all__ = ["PREFIX", "ServerCollector", "metrics_route"]

#: Every metric of the agent server starts with this.
PREFIX = "stellate_server"


class ServerCollector:
    """A ``prometheus_client`` collector reading one :class:`~stellate.server.AgentServer`.

    Every label value a metric can take is listed (with 0) from the first scrape on, so a
    dashboard's series exist before the first event of their kind.
    """

    def __init__(self, server: AgentServer, prefix: str = PREFIX) -> None:
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
        registered = GaugeMetricFamily(
            f"{p}_clients_registered",
            "Clients registered now, by type (device, constellation).",
            labels=["client_type"],
        )
        now_registered = _by_type(entry.client_type for entry in server.registry)
        for client_type in ClientType:
            registered.add_metric([client_type.value], now_registered[client_type])
        yield registered
        yield from self._counts()
        yield _labelled(
            CounterMetricFamily(
                f"{p}_handshake_failures",
                "Connections that ended without a WebSocket or a successful HTTP answer.",
                labels=["reason"],
            ),
            [(failure.value, stats.failures[failure]) for failure in HandshakeFailure],
        )
        yield _labelled(
            CounterMetricFamily(
                f"{p}_accept_errors",
                "Accepts that failed for want of resources (EMFILE...), by errno.",
                labels=["errno"],
            ),
            sorted(stats.accept_errors.items()),
        )
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
        yield _labelled(
            CounterMetricFamily(
                f"{p}_http_requests",
                "Plain HTTP requests answered, by path (unknown paths: other) and status.",
                labels=["path", "status"],
            ),
            [((path, str(status)), n) for (path, status), n in sorted(stats.http.items())],
        )

    def _counts(self) -> Iterator[Metric]:
        counts, p = self._server.counts, self._prefix
        if counts is None:
            return
        yield _labelled(
            CounterMetricFamily(
                f"{p}_registrations",
                "Registrations accepted, by client type.",
                labels=["client_type"],
            ),
            [(t.value, counts.registered[t]) for t in ClientType],
        )
        auth = self._server.listener_stats.failures[HandshakeFailure.BAD_TOKEN]
        yield _labelled(
            CounterMetricFamily(
                f"{p}_registrations_rejected",
                "Registrations refused, by the kind a client reads from the refusal "
                "(auth: refused at the handshake for the key).",
                labels=["kind"],
            ),
            [
                (kind.value, counts.rejected[kind] + (auth if kind is RejectionKind.AUTH else 0))
                for kind in RejectionKind
            ],
        )
        yield _labelled(
            CounterMetricFamily(
                f"{p}_departures",
                "Registered clients gone (closed, lost, lease expired, replaced), by type.",
                labels=["client_type"],
            ),
            [(t.value, counts.departed[t]) for t in ClientType],
        )
        yield CounterMetricFamily(
            f"{p}_heartbeats", "Heartbeats answered.", value=counts.heartbeats
        )
        yield _labelled(
            CounterMetricFamily(
                f"{p}_frames_refused",
                "Frames of registered clients refused, by reason.",
                labels=["reason"],
            ),
            [(reason.value, counts.refused[reason]) for reason in FrameRefusal],
        )


def _by_type(types: Iterable[ClientType]) -> dict[ClientType, int]:
    totals = dict.fromkeys(ClientType, 0)
    for client_type in types:
        totals[client_type] += 1
    return totals


def _labelled(
    family: CounterMetricFamily, samples: Iterable[tuple[str | tuple[str, ...], float]]
) -> CounterMetricFamily:
    for labels, value in samples:
        family.add_metric([labels] if isinstance(labels, str) else list(labels), value)
    return family


def metrics_route(server: AgentServer) -> HttpRoute:
    """The ``/metrics`` route: the server's collector in a registry of its own."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServerCollector(server))

    def metrics(_request: HttpRequest) -> HttpResponse:
        return HttpResponse(generate_latest(registry), CONTENT_TYPE_LATEST)

    return metrics
