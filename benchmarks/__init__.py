"""stellate benchmarks: ``python -m benchmarks [--quick]`` (or ``make bench [QUICK=1]``).

Six figures, each measured with the manager in its own process and the agent servers and the
(simulated) device agents in other processes on 127.0.0.1:

1. ``latency``  one device through the five phases, N runs: p50/p90/p99 and time per phase.
2. ``fleet``    N devices from manager start to all IDLE: wall time, devices/s, manager CPU.
3. ``memory``   manager RSS per IDLE device, with tracemalloc's split (machine, profiles, sockets).
4. ``steady``   manager CPU per minute with N IDLE devices heartbeating (default interval and 1 s).
5. ``machine``  the state machine alone: triggers/s, models added/s.
6. ``storm``    N IDLE devices, servers restarted: time until all IDLE again, attempt spread.

Layout: ``env`` (machine description, open-file limit), ``procs`` (server/agent subprocesses),
``worker`` (the manager-side measurements, run as ``python -m benchmarks.worker``), one module
per benchmark, ``report`` (targets and the table).
"""
