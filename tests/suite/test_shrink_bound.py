"""The suite's bound on shrinking (``profiles.SHRINK_SECONDS``) is one hypothesis still obeys.

Hypothesis gives up shrinking after ``MAX_SHRINKING_SECONDS`` of its engine, a module constant
with no public setting; ``profiles.py`` lowers it so that a failure is reported within a minute
instead of after five. A hypothesis release that renamed the constant, or stopped reading it
where it starts a shrink, would bring the five minutes back silently: this fails first.
"""

from __future__ import annotations

import inspect

import profiles
from hypothesis.internal.conjecture import engine


def test_the_engine_reads_the_suite_s_shrink_bound() -> None:
    assert engine.MAX_SHRINKING_SECONDS == profiles.SHRINK_SECONDS <= 30
    source = inspect.getsource(engine.ConjectureRunner.shrink_interesting_test_cases)
    assert "time.perf_counter() + MAX_SHRINKING_SECONDS" in source
