"""The test cluster: `scheduler.localcluster` with the test graphs and short leases."""

from __future__ import annotations

from pathlib import Path

from scheduler.localcluster import ROOT, LocalCluster, RedisProcess

__all__ = ["ROOT", "Cluster", "RedisServer"]


class RedisServer(RedisProcess):
    """A private redis-server, started at once."""

    def __init__(self, workdir: Path, **kwargs: object) -> None:
        super().__init__(workdir, **kwargs)  # type: ignore[arg-type]
        self.start()


class Cluster(LocalCluster):
    """Workers that load `graphs` (`tests.dist_graphs`), with leases short enough for quick
    crash tests."""

    def __init__(self, workdir: Path, redis_url: str, broker_url: str | None = None,
                 graphs: str = "tests.dist_graphs", **env: str) -> None:
        super().__init__(
            workdir, redis_url, broker_url, graphs=graphs,
            **{"CELERYGRAPH_LEASE_SECONDS": "1.5", "CELERYGRAPH_SWEEP_SECONDS": "0.25", **env},
        )

    def start(self, name: str, **kwargs):  # noqa: ANN003, ANN201
        return self.start_worker(name, **kwargs)
