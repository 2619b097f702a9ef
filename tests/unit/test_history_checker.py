"""The history checker itself must catch what it is meant to catch (negative controls)."""

from __future__ import annotations

from history import History, check, key_of


def _history(acked: range, failed: range = range(0)) -> History:
    h = History()
    h.attempted = set(acked) | set(failed)
    h.acked = set(acked)
    h.failed = set(failed)
    return h


def _state(ids: list[int]) -> dict[str, list[int]]:
    state: dict[str, list[int]] = {}
    for i in ids:
        state.setdefault(key_of(i), []).append(i)
    return state


def test_a_complete_state_passes():
    verdict = check(_history(range(1, 501)), _state(list(range(1, 501))))
    assert verdict.ok and verdict.applied == 500


def test_a_lost_acknowledged_write_is_caught():
    ids = list(range(1, 501))
    ids.remove(277)
    verdict = check(_history(range(1, 501)), _state(ids))
    assert not verdict.ok and verdict.lost == {277}


def test_a_write_applied_twice_is_caught():
    verdict = check(_history(range(1, 501)), _state([*range(1, 501), 42]))
    assert not verdict.ok and verdict.duplicated == {42}


def test_an_id_never_sent_is_caught():
    verdict = check(_history(range(1, 501)), _state([*range(1, 501), 9999]))
    assert not verdict.ok and verdict.unexpected == {9999}


def test_failed_writes_may_or_may_not_be_applied():
    history = _history(range(1, 401), failed=range(401, 501))
    assert check(history, _state(list(range(1, 451)))).ok
    assert check(history, _state(list(range(1, 401)))).ok
