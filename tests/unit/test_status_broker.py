"""What `liftline status` makes of the broker's side and of gaps (no servers): the
columns and warnings built from the management API's view and the workers' reports."""

from __future__ import annotations

from typing import Any

from liftline import status
from liftline.queue.management import ClusterView, QueuePlacement


def row(p: int = 3, primary: str | None = "w1") -> dict[str, Any]:
    return {"partition": p, "primary": primary}


def test_gaps_are_counted_from_the_primary_and_named_from_redis() -> None:
    members = {"w1": {"partitions": {3: {"role": "primary", "missing": 4}}}}
    warnings: list[str] = []
    r = row()
    status._gap_columns(r, members, {"6b101963-58b912ce874d": [[97, 99], [120, 120]]}, warnings)
    assert r["missing_writes"] == 4 and r["gaps"] == {"6b101963-58b912ce874d": [[97, 99],
                                                                               [120, 120]]}
    assert warnings == ["partition 3: 4 write(s) missing from the stream (producer "
                        "6b101963-58b912ce874d: seqs 97-99, 120); refused writes (their producer "
                        "was told) or lost ones: see liftline deadletters"]
    # Nothing missing: no warning, 0 in the column.
    quiet: list[str] = []
    r = row()
    status._gap_columns(r, {"w1": {"partitions": {3: {"missing": 0}}}}, {}, quiet)
    assert r["missing_writes"] == 0 and quiet == []


def test_a_stream_without_a_majority_online_is_warned_about() -> None:
    warnings: list[str] = []
    r = row()
    members = ["r1@h", "r2@h", "r3@h"]
    status._placement_columns(r, QueuePlacement("s", "stream", "r1@h", members, members[:2]),
                              warnings)
    assert (r["stream_leader"], r["stream_online"]) == ("r1@h", ["r1@h", "r2@h"])
    assert warnings == []  # one node down: said once for the node, not per stream
    status._placement_columns(r, QueuePlacement("s", "stream", None, members, ["r1@h"]), warnings)
    assert warnings == ["partition 3: only 1 of 3 stream replicas online; writes to it fail"]


def test_the_broker_part_lists_nodes_and_job_queue_leaders() -> None:
    view = ClusterView("http://m", {"r1@h": True, "r2@h": False}, {
        "liftline.c.jobs": QueuePlacement("liftline.c.jobs", "quorum", "r1@h", ["r1@h", "r2@h"],
                                          ["r1@h"]),
        "liftline.c.p0": QueuePlacement("liftline.c.p0", "stream", "r1@h")})
    warnings: list[str] = []
    part = status._rabbitmq_part(view, warnings)
    assert part is not None
    assert part["nodes"] == [{"name": "r1@h", "running": True}, {"name": "r2@h", "running": False}]
    assert [q["queue"] for q in part["job_queues"]] == ["liftline.c.jobs"]
    assert warnings == ["rabbitmq node r2@h is down"]
    assert status._rabbitmq_part(None, warnings) is None
