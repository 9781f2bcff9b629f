"""LangGraph integration: graphs built with LangGraph run on graphdef and the cluster
(`convert`, which workers apply to the LangGraph graphs of their modules), and
celerygraph's storage is usable from a real LangGraph program (`LangGraphRedisSaver`,
`LangGraphRedisStore`).

A package of its own, outside ``graphdef``, so that ``langgraph`` stays an optional extra:
nothing in ``graphdef``, ``scheduler`` or ``worker`` imports it, except the worker's
registry, which imports ``convert`` only when a graph module holds a LangGraph object.
"""

from celerygraph_langgraph.convert import Saver, convert, for_cluster, is_graph
from celerygraph_langgraph.errors import ConversionError
from celerygraph_langgraph.redis_saver import LangGraphRedisSaver
from celerygraph_langgraph.redis_store import LangGraphRedisStore

__all__ = ["ConversionError", "LangGraphRedisSaver", "LangGraphRedisStore", "Saver", "convert",
           "for_cluster", "is_graph"]
