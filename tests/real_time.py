"""Real seconds in tests that use real sockets: the three figures, each said once, here.

Tests never assert on real-time speed (``make bench`` measures speed). Tests on real loopback
sockets still meet real time in three places, and each one is a flake if it is tight: CI runs
``make test`` and then a random ``make test-slice`` on two cores shared with other jobs, where a
process can stand still for seconds.

``HANG_GUARD``
    The ``trio.fail_after`` around a test's real-socket work (and the like: polling loops,
    subprocesses started by such a test). It only turns a hang into a failure; a healthy run
    needs well under a second on an idle machine. It is never a speed claim, so it is large.

``PATIENCE``
    A timeout handed to the code under test on real sockets when the test does not expect it to
    fire: ``connect_timeout``, a wait for an answer, a client's heartbeat lease. Shorter than
    ``HANG_GUARD``, so that a real failure still says what timed out. A test *about* a timeout
    runs in virtual time instead (``MockClock``), where seconds cost nothing.

``LOOPBACK_AUTOJUMP``
    ``MockClock(autojump_threshold=...)`` for a test that drives real loopback sockets under
    virtual time (use the ``loopback_clock`` fixture of ``tests/conftest.py``). With a threshold
    of 0 the clock jumps whenever every task waits, including while bytes are still in flight in
    the kernel: on a busy machine it then jumps straight to a deadline and a valid exchange
    times out. With this threshold the clock jumps only after every task has been blocked this
    many real seconds, about a thousand times a loopback exchange on a loaded machine. Each
    virtual wait of such a test therefore costs this much real time: keep them few, and script
    bytes through memory streams where the test is about parsing them.
    ``tests/suite/test_real_time_rules.py`` fails on a test function that drives a real
    socket under an autojump of 0.
"""

from __future__ import annotations

#: Real seconds after which a test on real sockets is taken to hang (never a speed bound).
HANG_GUARD = 120.0

#: Real seconds for timeouts of the code under test that a test does not expect to fire.
PATIENCE = 60.0

#: Real seconds every task must have been blocked before a ``MockClock`` jumps, in tests that
#: drive real loopback sockets under virtual time.
LOOPBACK_AUTOJUMP = 1.0
