"""OpenTelemetry traces: one trace per run, a span per superstep and per node.

No process holds a run between supersteps, so none can hold a span open for the whole run.
A run's trace begins with a short `celerygraph.run` span, made by the driver that starts the
run; its context (a W3C traceparent) is stored in the run record, and each superstep's span
(`celerygraph.superstep`: the advance that plans and dispatches it) takes it as a remote
parent in whichever process advances the run. The superstep span's context rides in the
headers of the node messages it sends (`scheduler.protocol.Sender`), so a node's span
(`celerygraph.node`) is its child on the worker that runs it; a node run in place gets its
parent from the advance that kept it, and one the sweeper re-sent (no superstep span)
hangs from the run's span. The run span is a new trace root, linked to the producer's span
when the start message carried one: a trace per run, reachable from the request.

Off unless a TracerProvider is set, by the application (`trace.set_tracer_provider`) or by
`configure_from_env` when OTEL_TRACES_EXPORTER asks for one. Without the `otel` extra, or
with no provider, every function here costs a check and does nothing.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

TRACER_NAME = "celerygraph"
THREAD_ID = "celerygraph.thread_id"
RUN_ID = "celerygraph.run_id"
TASK_ID = "celerygraph.task_id"
GRAPH = "celerygraph.graph"
NODE = "celerygraph.node"
STEP = "celerygraph.step"
CHECKPOINT_ID = "celerygraph.checkpoint_id"
OUTCOME = "celerygraph.outcome"


@functools.cache
def _installed() -> bool:
    """Whether the `otel` extra is; asked once, since a failed import is not cached and
    would search the path again on every message and node."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except ModuleNotFoundError:  # no `opentelemetry` package at all
        return False


def _tracer() -> Tracer | None:
    """The tracer, or None while no TracerProvider is set (or the extra is missing)."""
    if not _installed():
        return None
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(),
                  trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return trace.get_tracer(TRACER_NAME)


def message_headers() -> dict[str, str]:
    """Headers carrying the current span's context to the process that takes the message
    (empty when nothing is traced)."""
    if _tracer() is None:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def from_message(request: Any) -> Iterator[None]:
    """Make the context a Celery message's headers carry current while its task runs."""
    if _tracer() is None:
        yield
        return
    from opentelemetry import context, propagate

    fields = propagate.get_global_textmap().fields
    carrier = {k: v for k in fields if isinstance(v := getattr(request, k, None), str)}
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


def _parent(traceparent: str | None) -> Context | None:
    """The context a stored traceparent names, as a remote parent."""
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _traceparent(span: Span) -> str | None:
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(span))
    return carrier.get("traceparent")


@contextmanager
def run_span(graph: str, thread_id: str, run_id: str,
             stored: str | None) -> Iterator[str | None]:
    """The run's span, current while its start goes on; yields the traceparent to store
    (None when not traced). `stored`: the traceparent an earlier start of this run stored,
    which stays the run's (this start joins its trace)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    from opentelemetry import trace

    producer = trace.get_current_span().get_span_context()
    parent = _parent(stored)
    links = [trace.Link(producer)] if producer.is_valid and parent is None else []
    attributes = {GRAPH: graph, THREAD_ID: thread_id, RUN_ID: run_id}
    # No parent: a new trace per run, linked to the producer's rather than inside it.
    with tracer.start_as_current_span("celerygraph.run", context=parent or _root(),
                                      links=links, attributes=attributes) as span:
        yield stored or _traceparent(span)


def _root() -> Context:
    from opentelemetry import context

    return context.Context()


@contextmanager
def superstep_span(graph: str, thread_id: str, run_id: str, step: int,
                   checkpoint_id: str, run_traceparent: str | None) -> Iterator[str | None]:
    """A superstep's dispatch, parented on the run's stored context; current while its
    messages are sent. Yields its traceparent, for a task run in place."""
    tracer = _tracer()
    if tracer is None or not run_traceparent:
        yield None
        return
    attributes: dict[str, str | int] = {
        GRAPH: graph, THREAD_ID: thread_id, RUN_ID: run_id, STEP: step,
        CHECKPOINT_ID: checkpoint_id,
    }
    with tracer.start_as_current_span("celerygraph.superstep", context=_parent(run_traceparent),
                                      attributes=attributes) as span:
        yield _traceparent(span)


class NodeSpan:
    """Lets a node's span learn what ran (known only once the task was planned)."""

    def __init__(self, span: Span | None) -> None:
        self.span = span

    def ran(self, node: str, outcome: str) -> None:
        """A node that failed returned its error to the loop rather than raising it through
        the span: mark the span failed here."""
        if self.span is None:
            return
        self.span.set_attribute(NODE, node)
        self.span.set_attribute(OUTCOME, outcome)
        self.span.update_name(f"celerygraph.node {node}")
        if outcome == "failed":
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR, "the node raised"))


@contextmanager
def node_span(graph: str, thread_id: str, run_id: str, checkpoint_id: str, task_id: str, *,
              run_traceparent: str | None, kept_by: str | None = None) -> Iterator[NodeSpan]:
    """A node task's run. Its parent: the superstep that kept it to run here (`kept_by`),
    else the superstep whose message brought it (the current context), else the run."""
    tracer = _tracer()
    if tracer is None:
        yield NodeSpan(None)
        return
    from opentelemetry import trace

    parent = _parent(kept_by)
    if parent is None and not trace.get_current_span().get_span_context().is_valid:
        parent = _parent(run_traceparent)
    attributes = {GRAPH: graph, THREAD_ID: thread_id, RUN_ID: run_id, TASK_ID: task_id,
                  CHECKPOINT_ID: checkpoint_id}
    with tracer.start_as_current_span("celerygraph.node", context=parent,
                                      attributes=attributes) as span:
        yield NodeSpan(span)


# ---- configuration from the environment -------------------------------------------------


def configure_from_env(env: Mapping[str, str] | None = None) -> None:
    """Set a TracerProvider when OTEL_TRACES_EXPORTER names an exporter (`otlp`, `console`)
    and the application set none. Called when a worker starts; the batch processor's thread
    starts again in each pool child after the fork (the SDK registers that itself)."""
    env = os.environ if env is None else env
    name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not name or name == "none":
        return
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_TRACES_EXPORTER=%s but the `otel` extra is not installed "
                    "(pip install 'celerygraph[otel]'): no traces", name)
        return
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # the application configured tracing itself
    exporter: SpanExporter
    if name == "console":
        exporter = ConsoleSpanExporter()
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        log.error("OTEL_TRACES_EXPORTER=%s: celerygraph sets up `otlp` (HTTP) or `console`; "
                  "no traces", name)
        return
    where = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT") or "the default OTLP endpoint"
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(reporting(exporter, where)))
    trace.set_tracer_provider(provider)


def reporting(exporter: SpanExporter, where: str) -> SpanExporter:
    """`exporter`, saying once per outage, in a line an operator can act on, that spans
    are being dropped. Export runs on the batch processor's thread: a collector that does
    not answer costs spans, never a node."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Reporting(SpanExporter):
        def __init__(self) -> None:
            self.failing = False

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            try:
                result = exporter.export(spans)
            except Exception as exc:  # noqa: BLE001 - an exporter bug must not stop tracing
                result = SpanExportResult.FAILURE
                reason = f"{type(exc).__name__}: {exc}"
            else:
                reason = "the exporter reported a failure"
            if result == SpanExportResult.FAILURE and not self.failing:
                log.error("traces: could not export %d span(s) to %s (%s); dropping spans "
                          "until it answers, nodes run as usual", len(spans), where, reason)
            elif result == SpanExportResult.SUCCESS and self.failing:
                log.info("traces: exporting to %s again", where)
            self.failing = result == SpanExportResult.FAILURE
            return result

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return exporter.force_flush(timeout_millis)

    return Reporting()
