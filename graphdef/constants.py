"""Reserved names shared by the builder, the superstep algorithm and the savers.

They match LangGraph's so that graphs, stream chunks and stored writes read the same.
"""

import sys

START = sys.intern("__start__")
END = sys.intern("__end__")

TASKS = sys.intern("__pregel_tasks")
INTERRUPT = sys.intern("__interrupt__")
RESUME = sys.intern("__resume__")
ERROR = sys.intern("__error__")
NO_WRITES = sys.intern("__no_writes__")
RETURN = sys.intern("__return__")
PREVIOUS = sys.intern("__previous__")
INPUT = sys.intern("__input__")

PUSH = sys.intern("__pregel_push")
PULL = sys.intern("__pregel_pull")

NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"

# Writes that describe what happened to a task rather than what it produced.
CONTROL_WRITES = frozenset((ERROR, INTERRUPT, RESUME))
# Writes that never reach a channel.
RESERVED_WRITES = frozenset((NO_WRITES, RESUME, INTERRUPT, RETURN, ERROR))

NS_SEP = "|"
NS_END = ":"

BRANCH_TO = "branch:to:{}"
