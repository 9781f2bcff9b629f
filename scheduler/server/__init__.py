"""`celerygraph serve`: the LangGraph Agent Server HTTP API over the Celery cluster, so the
`langgraph-sdk` clients (Python, JavaScript) drive runs whose supersteps spread over the
workers. One small module per group of endpoints (`assistants`, `threads`, `runs`,
`store_items`), `sse` for streams, `auth` for API keys, `app` for the app and the command.
"""
