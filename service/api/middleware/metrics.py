"""Prometheus metrics of one app, in a registry of its own (never prometheus-client's global one).

    initsvc_http_requests_total{method, route, status}      counter    answered requests
    initsvc_http_request_duration_seconds{method, route}    histogram  first request byte to last body chunk
    initsvc_http_response_bytes_total{route}                counter    body bytes, counted when the answer ends
    initsvc_tensors_generated_total{scheme}                 counter    tensors made (HEAD and JSON summaries too)
    initsvc_queue_depth{device}                             gauge      jobs waiting for the device's worker
    initsvc_inflight_bytes{device}                          gauge      tensor bytes admitted and not yet sent
    initsvc_inflight_limit_bytes{device}                    gauge      INITSVC_MAX_INFLIGHT_BYTES for the device
    initsvc_device_memory_used_bytes{device}                gauge      cpu: process RSS; cuda:N: torch.cuda.memory_allocated
    initsvc_worker_up{device}                               gauge      1 while the device's worker thread runs
    initsvc_worker_restarts_total{device}                   counter    workers replaced after a hang or a crash

``route`` is the route's template (``/v1/tensor``), never the raw path, so labels stay few;
requests that match no route are ``<unmatched>``, and methods outside the standard ones ``OTHER``. The gauges are read from ``app.state.pool``
when ``/metrics`` is scraped, so nothing runs between scrapes. Nothing happens at import time:
``create_app`` builds a ``Metrics`` and gives ``ObserverMiddleware`` a ``RequestMetrics`` hook.

The request counter, the latency and the bytes are updated once per request, when its answer
ends (``observer.py``): its last body byte handed to the server (before it goes out, so a client
holding the answer sees it counted), or the request ending without that: the status sent, else 500
if it raised and 499 if the client went away. The access line reads the same observer.
"""

from __future__ import annotations

import os
import re
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.routing import compile_path
from starlette.types import Scope

from service.api.middleware.observer import ResponseObserver

UNMATCHED = "<unmatched>"
# Any token is a valid HTTP method; labels take these, and OTHER for the rest (bounded cardinality).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"})
# Latency buckets in seconds: a tiny tensor answers in milliseconds, a multi-GiB one in minutes.
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def process_rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``; peak RSS where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_memory_bytes(device: str) -> int:
    """Memory in use on ``device``: the process RSS for ``cpu``, torch's allocated bytes for
    ``cuda:N`` (0 while CUDA is not initialized: a scrape must not create a CUDA context)."""
    if device == "cpu":
        return process_rss_bytes()
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.memory_allocated(torch.device(device)))
    return 0


class PoolCollector:
    """Queue depth, in-flight bytes, memory and worker state per device, read at scrape time
    from ``state.pool`` (absent before the lifespan starts: then no samples)."""

    def __init__(self, state: Any):
        self.state = state

    def _families(self) -> dict[str, Metric]:
        return {
            "queue": GaugeMetricFamily("initsvc_queue_depth", "Jobs waiting for the device's worker.", labels=["device"]),
            "inflight": GaugeMetricFamily(
                "initsvc_inflight_bytes", "Tensor bytes admitted on the device and not yet sent.", labels=["device"]
            ),
            "limit": GaugeMetricFamily(
                "initsvc_inflight_limit_bytes", "Admission limit of the device (INITSVC_MAX_INFLIGHT_BYTES).",
                labels=["device"],
            ),
            "memory": GaugeMetricFamily(
                "initsvc_device_memory_used_bytes",
                "Memory in use: process RSS for cpu, torch.cuda.memory_allocated for cuda:N.",
                labels=["device"],
            ),
            "up": GaugeMetricFamily("initsvc_worker_up", "1 while the device's worker thread runs.", labels=["device"]),
            "restarts": CounterMetricFamily(
                "initsvc_worker_restarts", "Device workers replaced after a hang or a crash.", labels=["device"]
            ),
        }

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        pool = getattr(self.state, "pool", None)
        if pool is not None:
            for device, worker in pool.workers.items():
                admission = pool.admissions[device]
                families["queue"].add_metric([device], worker.queued)
                families["inflight"].add_metric([device], admission.in_flight_bytes)
                families["limit"].add_metric([device], admission.limit_bytes)
                families["memory"].add_metric([device], device_memory_bytes(device))
                families["up"].add_metric([device], 1 if worker.alive else 0)
                families["restarts"].add_metric([device], getattr(worker, "restarts", 0))
        return list(families.values())


class Metrics:
    """The app's registry and instruments; ``render`` gives the scrape body."""

    def __init__(self, state: Any = None):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "initsvc_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.duration = Histogram(
            "initsvc_http_request_duration_seconds", "Time from the request to the last body chunk of the answer.",
            ["method", "route"], buckets=DURATION_BUCKETS_S, registry=self.registry,
        )
        self.response_bytes = Counter(
            "initsvc_http_response_bytes", "Response body bytes sent, counted when the answer ends.",
            ["route"], registry=self.registry,
        )
        self.tensors = Counter(
            "initsvc_tensors_generated", "Tensors generated, by init scheme.", ["scheme"], registry=self.registry
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        if state is not None:
            self.registry.register(PoolCollector(state))

    def observe(self, method: str, route: str, status: int, duration_s: float, nbytes: int = 0) -> None:
        """One answered request: its count, latency and body bytes."""
        method = method if method in METHODS else "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # labels() checks and locks each time; the label sets are few (see above)
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)), self.duration.labels(method, route),
                self.response_bytes.labels(route),
            )
        requests, duration, response_bytes = children
        requests.inc()
        duration.observe(duration_s)
        if nbytes:
            response_bytes.inc(nbytes)

    def tensors_made(self, made: Iterable[Any]) -> None:
        """Count tensors by scheme: ``MadeTensor``s (``.spec.scheme``) or specs (``.scheme``). A
        tensor a module's own constructor initialized has no scheme and counts as ``module_default``."""
        schemes = Tally(getattr(getattr(m, "spec", m), "scheme", None) or "module_default" for m in made)
        for scheme, n in schemes.items():
            self.tensors.labels(scheme).inc(n)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition and its content type: Prometheus text, or OpenMetrics when accepted."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class RouteTemplates:
    """The route template that serves (or would serve) a request; ``<unmatched>`` if none.

    Routing leaves the route in ``scope["route"]``. Answers given before routing (401, 413, a CORS
    preflight) are matched here against a table of the app's route templates, built on first use
    (``fastapi.routing.iter_route_contexts`` flattens included routers): a template whose methods
    include the request's wins over one that only matches the path (which routing answers 405)."""

    def __init__(self, routes: Iterable[Any] = ()):
        self._routes = routes
        self._table: list[tuple[re.Pattern, str, frozenset[str] | None]] | None = None

    def _build(self) -> list[tuple[re.Pattern, str, frozenset[str] | None]]:
        try:
            from fastapi.routing import iter_route_contexts
        except ImportError:  # pragma: no cover - older FastAPI: routes are flat already
            contexts: Iterable[Any] = list(self._routes)
        else:
            contexts = iter_route_contexts(list(self._routes))
        table = []
        for route in contexts:
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            if template:
                methods = getattr(route, "methods", None)
                table.append((compile_path(template)[0], template, frozenset(methods) if methods else None))
        return table

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
        if self._table is None:
            self._table = self._build()
        path, method, partial = scope.get("path", ""), scope.get("method"), None
        for regex, template, methods in self._table:
            if regex.match(path):
                if methods is None or method in methods:
                    return template
                partial = partial or template
        return partial or UNMATCHED


class RequestMetrics:
    """The ``on_end`` hook of ``ObserverMiddleware`` (``observer.py``) that counts a request, its
    latency and the bytes of its answer, once, when the answer ends."""

    def __init__(self, metrics: Metrics, routes: Iterable[Any] = ()):
        self.metrics = metrics
        self.route_of = RouteTemplates(routes)

    def __call__(self, scope: Scope, observer: ResponseObserver) -> None:
        self.metrics.observe(
            scope.get("method", ""), self.route_of(scope), observer.final_status(), observer.duration_s,
            observer.body_bytes,
        )
