"""Stores: long-term memory shared across threads (LangGraph's `langgraph.store` names).

`graphdef.store.redis.RedisStore` is imported from its module, as it needs the `redis`
package.
"""

from graphdef.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)
from graphdef.store.memory import InMemoryStore
from graphdef.store.sqlite import SqliteStore

__all__ = [
    "BaseStore",
    "GetOp",
    "InMemoryStore",
    "IndexConfig",
    "InvalidNamespaceError",
    "Item",
    "ListNamespacesOp",
    "MatchCondition",
    "Op",
    "PutOp",
    "Result",
    "SearchItem",
    "SearchOp",
    "SqliteStore",
    "TTLConfig",
]
