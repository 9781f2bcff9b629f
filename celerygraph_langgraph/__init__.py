"""LangGraph integration: celerygraph's storage used from a real LangGraph program.

A package of its own, outside ``graphdef``, so that ``langgraph`` stays an optional extra:
nothing in ``graphdef``, ``scheduler`` or ``worker`` imports it.
"""

from celerygraph_langgraph.redis_saver import LangGraphRedisSaver
from celerygraph_langgraph.redis_store import LangGraphRedisStore

__all__ = ["LangGraphRedisSaver", "LangGraphRedisStore"]
