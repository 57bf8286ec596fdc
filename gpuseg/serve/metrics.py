"""Prometheus metrics of one app (a registry of its own, so that several apps in one process do not mix)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gpuseg_requests", "Requests answered, by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "gpuseg_request_seconds", "Time to answer, by route", ["route"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge("gpuseg_queue_depth", "Jobs waiting for the device or running", registry=self.registry)
        self.queue_depth.set_function(queue_depth)
        self.pixels = Counter("gpuseg_pixels_clustered", "Pixels of the images segmented", registry=self.registry)
        self.samples = Counter(
            "gpuseg_samples_clustered", "Rows of the feature arrays clustered", registry=self.registry
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
