"""The fleet's view as rows (stellate/store/report.py): owners from the live leases, statuses
from the snapshots, an unreadable snapshot its own row, every live manager counted."""

from __future__ import annotations

from stellate.fsm import DeviceStatus
from stellate.store.ownership import unit_of
from stellate.store.port import FleetView, Holder, Lease, Member
from stellate.store.report import DeviceRow, ManagerRow, fleet_report
from stellate.store.snapshot import DeviceSnapshot, encode


def snapshot(device_id: str, status: DeviceStatus, reason: str | None = None) -> str:
    return encode(DeviceSnapshot(device_id, status, failure_reason=reason, last_error=reason))


def held(device_id: str, owner: str, token: int) -> tuple[str, Holder]:
    unit = unit_of(device_id)
    return unit, Holder(Lease(unit, owner, token), 10.0)


def test_each_device_is_owned_by_the_holder_of_its_unit() -> None:
    assert unit_of("a") != unit_of("b") != unit_of("c") != unit_of("a")
    view = FleetView(
        members=(Member("m2", 4.0, 11.0), Member("m1", 1.5, 13.5)),
        holders=dict([held("a", "m1", 7), held("b", "m2", 9)]),
        snapshots={
            "c": snapshot("c", DeviceStatus.IDLE),  # its unit's lease ran out: no owner
            "b": snapshot("b", DeviceStatus.FAILED, "gone"),
            "a": snapshot("a", DeviceStatus.IDLE),
        },
    )
    report = fleet_report(view)
    assert report.devices == (
        DeviceRow("a", "idle", "m1"),
        DeviceRow("b", "failed", "m2", failure_reason="gone", last_error="gone"),
        DeviceRow("c", "idle", None),
    )
    assert report.managers == (  # sorted by id; devices and units each holds
        ManagerRow("m1", 1, 1, 1.5, 13.5),
        ManagerRow("m2", 1, 1, 4.0, 11.0),
    )
    assert report.to_json()["managers"][0] == {
        "id": "m1",
        "devices": 1,
        "units": 1,
        "last_renewal": 1.5,
        "expires_in": 13.5,
    }
    assert report.to_json()["devices"][1] == {
        "device_id": "b",
        "status": "failed",
        "owner": "m2",
        "failure_reason": "gone",
        "last_error": "gone",
        "problem": None,
    }


def test_an_unreadable_snapshot_is_a_row_saying_why() -> None:
    view = FleetView(
        members=(Member("m1", 0.0, 15.0),),
        holders=dict([held("x", "m1", 3)]),
        snapshots={"x": '{"v": 99}', "y": "not json", "z": snapshot("other", DeviceStatus.IDLE)},
    )
    rows = {row.device_id: row for row in fleet_report(view).devices}
    assert rows["x"].status is None and rows["x"].owner == "m1"
    assert "unknown format version 99" in (rows["x"].problem or "")
    assert "corrupt" in (rows["y"].problem or "")
    assert "another device" in (rows["z"].problem or "")
    assert fleet_report(view).managers == (ManagerRow("m1", 1, 1, 0.0, 15.0),)


def test_a_manager_without_devices_is_listed_with_none() -> None:
    view = FleetView(members=(Member("idle-one", 0.5, 14.5),), holders={}, snapshots={})
    assert fleet_report(view).managers == (ManagerRow("idle-one", 0, 0, 0.5, 14.5),)
    assert fleet_report(view).devices == ()
