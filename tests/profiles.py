"""The suite's hypothesis profiles, and the example counts tests scale by them.

* ``stellate`` (the default; ``make test``): derandomized, so every run on every machine tries
  the same examples, and fast. No deadline: a fleet's real time varies with the machine's load.
* ``thorough`` (``make test-thorough``): random, ten times the examples. The run's seed is
  printed; ``make test-thorough SEED=N`` (``--hypothesis-seed=N``) replays it.
* ``ci`` (``.ci/run``, after ``make test``): random like ``thorough``, three times the examples,
  on the property tests only: a bounded slice that varies the inputs from one CI run to the next.

Under every profile a failure is shrunk for at most ``SHRINK_SECONDS``, then reported.

Pick one with ``HYPOTHESIS_PROFILE``. A test that fixes its own count writes
``@settings(max_examples=examples(25))``: 25 under ``stellate``, 250 under ``thorough``.
A failing example a random profile finds is kept as an explicit ``@example`` on the test, so the
default run tries it from then on (docs/testing.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.internal.conjecture import engine

#: Example counts relative to the default profile.
SCALE = {"stellate": 1.0, "ci": 3.0, "thorough": 10.0}
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "stellate")
_DEFAULT_EXAMPLES = 50

for _name, _scale in SCALE.items():
    settings.register_profile(
        _name,
        deadline=None,
        derandomize=_name == "stellate",
        max_examples=round(_DEFAULT_EXAMPLES * _scale),
        print_blob=_name != "stellate",
        suppress_health_check=[HealthCheck.too_slow],
    )
settings.load_profile(PROFILE)

#: Seconds hypothesis may spend shrinking a failure before it reports the smallest example
#: found so far (still printed, and replayed by the same seed or its ``@reproduce_failure``
#: blob). Its own limit is 300 s, which on CI reads as a hang: a walk of 50 steps over the
#: lifecycle shrank for five minutes and more. Hypothesis has no public setting for it; its
#: engine reads this module constant on each shrink (``tests/suite/test_shrink_bound.py``
#: fails if a new hypothesis drops it).
SHRINK_SECONDS = 20
engine.MAX_SHRINKING_SECONDS = SHRINK_SECONDS


def examples(n: int) -> int:
    """``n`` examples under the default profile, scaled for the one loaded."""
    return max(1, round(n * SCALE.get(PROFILE, 1.0)))


def random_profile() -> bool:
    """True under a profile that draws fresh examples on every run (thorough, ci)."""
    return PROFILE != "stellate"


def fleet_phases() -> tuple[Phase, ...]:
    """Phases for properties over whole fleets: no shrinking except under ``thorough``.

    Shrinking a fleet of dozens of devices reruns it hundreds of times (minutes); instead
    ``check_fleet`` reruns each failing device alone and says whether it fails on its own, which
    is the small reproduction shrinking would have found. ``thorough`` has time to shrink.
    """
    if PROFILE == "thorough":
        return tuple(Phase)
    return (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
