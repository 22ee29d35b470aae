"""What a row of the table means to someone watching, declared with the table.

A watcher (the manager's events, the display, the stats, the fleet page, the test harness) asks
"did the device just become ready? lose its server? give up?" by reading a row's ``meanings``,
never by decoding its source and destination: the table says it once (``table.py`` declares
them on rows and states), and a new row that means "lost" is read as lost everywhere.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Meaning(StrEnum):
    #: A connection attempt starts (it counts one of ``max_retries``).
    ATTEMPT = "attempt"
    #: A fresh run starts (the owner's connect or retry, or a failed device's
    #: ``retry_failed_after`` passing): attempts, backoff and recovery over.
    RUN_STARTED = "run_started"
    #: The device waits before its next attempt; the wait is the state's deadline.
    BACKS_OFF = "backs_off"
    #: The wait before the next attempt is over (a backoff, or a failed device's
    #: ``retry_failed_after``): the device tries again.
    WAIT_OVER = "wait_over"
    #: Activated: the device is task-ready (the end of the five phases).
    READY = "ready"
    #: Activated without telemetry: the telemetry deadline passed with no answer.
    NO_TELEMETRY = "no_telemetry"
    #: An activated connection was lost (dropped, lease expired, the server's error): a
    #: recovery begins.
    LOST = "lost"
    #: The device gave up (retries exhausted, window passed, rejected, our bug): failed.
    GAVE_UP = "gave_up"
    #: The app gave the device a task.
    TASK_STARTED = "task_started"
    #: The app's task on the device is over.
    TASK_FINISHED = "task_finished"
    #: A task ended by a loss, a failure or a disconnect instead of finishing.
    TASK_INTERRUPTED = "task_interrupted"
    #: The owner stopped the device.
    STOPPED = "stopped"
    #: Logged and ignored: the row changes nothing (an internal row, no state change).
    IGNORED = "ignored"


#: Meanings that say a task is over, finished or not (a row declaring one replaces busy's
#: "interrupted"; a device its owner drains is disconnected then).
TASK_OVER: Final = frozenset({Meaning.TASK_FINISHED, Meaning.TASK_INTERRUPTED})
