"""Several managers, one fleet: the fleet store port, the ownership rules, the snapshot format.

Core code (no I/O): ``port`` is the interface the adapters implement
(``stellate.adapters.store_memory``, ``stellate.adapters.store_redis``), ``ownership`` the rules
(slots, rendezvous assignment, leases, self-fencing, the claim rate), ``keeper`` one manager's
side of them, sans-IO, and ``snapshot`` the versioned format a device's state is kept in.
docs/scaling.md explains the model and the numbers.
"""
