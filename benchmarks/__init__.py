"""stellate benchmarks: ``python -m benchmarks [--quick]`` (or ``make bench [QUICK=1]``).

The manager runs alone in a fresh worker process; the agent servers and the simulated device
agents (``stellate agent --count``) run in other processes on 127.0.0.1. Printed: the targets
of issue 15 with verdicts, a scaling table (N = 100 … 10,000), and details. docs/performance.md
says what each figure means and how to reproduce it.

Layout: ``env`` (machine description, open-file limit), ``procs`` (server/agent subprocesses),
``worker`` (the manager side, ``python -m benchmarks.worker``), ``driver`` (runs a worker job),
``fleet`` (bring-up, steady window, reconnect storm on one rig), ``latency`` (one device through
the five phases), ``storm`` (the restart analysis), ``cli_up`` (``stellate up --once --json``),
``machine`` (the state machine alone), ``targets`` (targets and verdicts), ``report`` (tables).
"""
