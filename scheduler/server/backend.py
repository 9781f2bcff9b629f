"""What every endpoint works with: the cluster's client, the API's records, an asyncio
Redis for reading streams without holding a thread, and the key-value store items live in.

Assistants are the graphs the workers publish (and those this process loads): one each,
with an id derived from the graph's reference (`package.module:attr`) as the reference
server derives it from a graph's name (UUID v5 in its namespace), so an id stays the same
across restarts and servers; and those users create (`AssistantRecords`), each a graph
with its own config, context and metadata.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio
from starlette.requests import Request

from graphdef.redis_client import connect_async
from graphdef.store.redis import RedisStore
from scheduler import registry
from scheduler.client import Client
from scheduler.cluster_graph import ClusterGraph
from scheduler.server.assistant_records import AssistantRecords
from scheduler.server.auth import may_use
from scheduler.server.config import ServerSettings
from scheduler.server.http import ApiError, not_found
from scheduler.server.records import ApiRecords
from scheduler.settings import Settings

# Each open stream or wait blocks one connection in `XREAD BLOCK` (for up to a second):
# more than this many at once wait for a free connection instead of failing.
MAX_ASYNC_CONNECTIONS = 1000

# The reference server's namespace for assistant ids derived from graph names.
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
# A graph's own assistant exists as long as the graph: no creation time of its own.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC).isoformat()


def backend_of(request: Request) -> Backend:
    """The backend the app was started with (`app.state.backend`)."""
    backend: Backend = request.app.state.backend
    return backend


def assistant_id(ref: str) -> str:
    return str(uuid.uuid5(NAMESPACE_GRAPH, ref))


def graph_not_found(graph_id: str, refs: list[str]) -> ApiError:
    return ApiError(404, f"Graph {graph_id!r} not found. Expected one of: {refs}")


def system_assistant(ref: str) -> dict[str, Any]:
    """A graph's own assistant (the reference server's `created_by: system` one)."""
    return {"assistant_id": assistant_id(ref), "graph_id": ref, "name": ref,
            "description": None, "config": {}, "context": {}, "metadata":
            {"created_by": "system"}, "version": 1, "created_at": EPOCH, "updated_at": EPOCH}


@dataclass
class Backend:
    settings: Settings
    client: Client
    records: ApiRecords
    aredis: redis.asyncio.Redis
    kv: RedisStore
    assistants: AssistantRecords

    @classmethod
    def connect(cls, settings: Settings, server: ServerSettings) -> Backend:
        # Runs of the graphs loaded here start here, not through the scheduler queue.
        client = Client(settings, start_here=True)
        registry.load_modules(settings.graph_modules)
        return cls(settings, client, ApiRecords(client.store),
                   connect_async(settings.store_url, max_connections=MAX_ASYNC_CONNECTIONS,
                                 blocking_timeout=30),
                   RedisStore(client.store.r, prefix=server.store_prefix),
                   AssistantRecords(client.store.r, f"{client.store.prefix}:api"))

    def graph_refs(self) -> list[str]:
        """Every graph a run may name: published by workers, or loaded here; those the
        request's key may use (`auth.visible_graphs`)."""
        refs = set(self.client.store.published_graphs()) | set(registry.known())
        return sorted(ref for ref in refs if may_use(ref))

    def graph_of(self, assistant: str) -> str:
        """The graph an `assistant_id` names (see `assistant`)."""
        return str(self.assistant(assistant)["graph_id"])

    def assistant(self, assistant: str, refs: list[str] | None = None) -> dict[str, Any]:
        """The assistant an `assistant_id` names: a user-created assistant's UUID, a graph's
        assistant's UUID, a graph reference, or a graph's attribute name when only one graph
        has it. 404 for an unknown UUID, 422 for anything else unknown (as the reference
        server). `refs`: `graph_refs()` as the caller read it for this request."""
        created = self.created_assistant(assistant)
        if created is not None:
            return created
        return system_assistant(self.graph_ref(assistant, refs))

    def served(self, assistant: dict[str, Any], refs: list[str] | None = None
               ) -> dict[str, Any]:
        """`assistant`, if its graph is one a run may name; a user-created assistant whose
        graph the workers no longer publish is a 404 naming the graph, the reference
        server's answer for an assistant whose graph left its registry."""
        self.served_graph(assistant["graph_id"], refs)
        return assistant

    def served_graph(self, ref: str, refs: list[str] | None = None) -> ClusterGraph:
        """The graph a thread's state is read and edited with; a 404 naming it if the
        workers no longer publish it (a thread left by a graph a redeploy dropped), as the
        reference answers for such a thread. `refs`: `graph_refs()` as the caller read it."""
        refs = self.graph_refs() if refs is None else refs
        if ref not in refs:
            raise graph_not_found(ref, refs)
        return self.graph(ref)

    def created_assistant(self, assistant_id: str) -> dict[str, Any] | None:
        """A user-created assistant, if the request's key may use its graph (for a key
        limited to other graphs it does not exist)."""
        created = self.assistants.get(assistant_id)
        return created if created is not None and may_use(created["graph_id"]) else None

    def created_assistants(self) -> list[dict[str, Any]]:
        """The user-created assistants of the graphs the request's key may use."""
        return [a for a in self.assistants.all() if may_use(a["graph_id"])]

    def graph_ref(self, assistant: str, refs: list[str] | None = None) -> str:
        """The graph a graph reference, a graph's attribute name or a graph's assistant's
        UUID names; 404 for an unknown UUID, 422 for anything else unknown."""
        refs = self.graph_refs() if refs is None else refs
        if assistant in refs:
            return assistant
        by_name = [r for r in refs if r.rsplit(":", 1)[-1] == assistant]
        if len(by_name) == 1:
            return by_name[0]
        try:
            wanted = str(uuid.UUID(assistant))
        except ValueError:
            raise ApiError(422, f"Invalid assistant: {assistant!r}. Must be either an "
                           f"assistant UUID or one of the graphs: {', '.join(refs)}") from None
        for ref in refs:
            if assistant_id(ref) == wanted:
                return ref
        raise not_found(f"Assistant {assistant!r}")

    def graph(self, ref: str) -> ClusterGraph:
        return ClusterGraph(self.client, ref)

    async def close(self) -> None:
        await self.aredis.aclose()
