"""Inspect and replay dead-letter queues (no CLI, no HTTP here).

::

    workers/ops/dlq/
      letters       DeadLetterMessage: one browsed letter and what its headers say
                    (worker- or broker-made, error class and type, group, when)
      filters       Filter (which letters a replay takes), parse_duration
      stats         error groups, hourly trend, inflow, DlqStats; summarize()
      browsing      browse without side effects, dlq_depth, purge, UnknownQueue
      replaying     replay(): the loop and its channel (get, publish, confirm, ack)
      replay_steps  the replay's pure steps and their outcomes (Skipped | Counted |
                    Replayed | Stop), ReplayResult
      refailures    the watch queue that sees replayed letters fail again; the stop rule
      records       letters as JSON lines (export); the audit log
      actions       replay_and_audit, purge_and_audit: what the CLI and Flower call

Where the explanations live: why browsing leaves every letter in its place
(one channel, no acks, closed at the end) in ``browsing``; the replay's
guarantee (confirm before ack, non-matching letters kept in order, the
default exchange) in ``replaying``; how re-failures are seen and when they
stop a replay in ``refailures``; how broker-made dead letters are labelled in
``letters``.

The public names are re-exported here (``from workers.ops import dlq;
dlq.browse(...)``); the replay's steps are imported from their own modules.
"""

from __future__ import annotations

from workers.ops.dlq.actions import purge_and_audit, replay_and_audit
from workers.ops.dlq.browsing import UnknownQueue, browse, dlq_depth, iter_dead_letters, purge
from workers.ops.dlq.filters import Filter, parse_duration
from workers.ops.dlq.letters import BROKER_ERROR_CLASSES, DeadLetterMessage, dead_lettered_at, group_id
from workers.ops.dlq.records import AUDIT_FILE, audit, export_lines, letter_record, operator
from workers.ops.dlq.refailures import MIN_REFAIL_SAMPLE, refail_limit_reached
from workers.ops.dlq.replay_steps import (
    DROPPED_PROPERTIES,
    STOP_PUBLISH_FAILED,
    STOP_REFAILURES,
    ReplayProgress,
    ReplayResult,
    replay_headers,
)
from workers.ops.dlq.replaying import replay
from workers.ops.dlq.stats import (
    TREND_HOURS,
    DlqStats,
    ErrorGroup,
    dlq_stats,
    error_groups,
    hourly_trend,
    inflow_last_hour,
    summarize,
)

__all__ = [
    "AUDIT_FILE",
    "BROKER_ERROR_CLASSES",
    "DROPPED_PROPERTIES",
    "MIN_REFAIL_SAMPLE",
    "STOP_PUBLISH_FAILED",
    "STOP_REFAILURES",
    "TREND_HOURS",
    "DeadLetterMessage",
    "DlqStats",
    "ErrorGroup",
    "Filter",
    "ReplayProgress",
    "ReplayResult",
    "UnknownQueue",
    "audit",
    "browse",
    "dead_lettered_at",
    "dlq_depth",
    "dlq_stats",
    "error_groups",
    "export_lines",
    "group_id",
    "hourly_trend",
    "inflow_last_hour",
    "iter_dead_letters",
    "letter_record",
    "operator",
    "parse_duration",
    "purge",
    "purge_and_audit",
    "refail_limit_reached",
    "replay",
    "replay_and_audit",
    "replay_headers",
    "summarize",
]
