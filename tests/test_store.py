"""The state store: transactions, and the record of the service's own trouble kept for the next digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from inbox_guard.records import MAX_PROBLEMS
from inbox_guard.store import Store

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def test_problems_are_counted_kept_across_reopening_and_forgotten_once_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "s.sqlite3"
    store = Store.open(path)
    store.note_problem("triage: cannot connect", T0)
    store.note_problem("triage: cannot connect", T0 + timedelta(minutes=5))
    store.note_problem("calendar: cannot fetch", T0 + timedelta(minutes=7))
    store.close()

    store = Store.open(path)  # a restarted service still knows
    reported = store.problems()
    assert [(p.what, p.times) for p in reported] == [
        ("triage: cannot connect", 2),
        ("calendar: cannot fetch", 1),
    ]
    assert reported[0].first == T0 and reported[0].last == T0 + timedelta(minutes=5)

    # Trouble again while the digest was being delivered: that is for the next one.
    store.note_problem("calendar: cannot fetch", T0 + timedelta(minutes=9))
    store.clear_problems(reported)
    assert [(p.what, p.times) for p in store.problems()] == [("calendar: cannot fetch", 2)]
    store.close()


def test_only_so_many_kinds_of_trouble_are_kept(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    for i in range(MAX_PROBLEMS + 5):
        store.note_problem(f"triage: error {i}", T0)
    assert len(store.problems()) == MAX_PROBLEMS
    store.note_problem("triage: error 0", T0)  # known ones are still counted
    assert store.problems()[0].times == 2
    store.close()


def test_any_method_can_be_called_inside_a_transaction_and_the_block_lands_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store.open(path)
    with store.transaction():
        store.set_position("INBOX", 7, 40)
        store.note_problem("triage: cannot connect", T0)  # opens its own: now nested
    store.close()

    store = Store.open(path)
    assert store.position("INBOX") == (7, 40)
    assert [p.what for p in store.problems()] == ["triage: cannot connect"]
    store.close()


def test_an_error_rolls_back_only_the_block_it_leaves(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")

    class Refused(Exception):
        pass

    with store.transaction():
        store.set_position("INBOX", 7, 40)
        try:
            with store.transaction():
                store.note_problem("calendar: cannot fetch", T0)
                raise Refused
        except Refused:
            pass
    assert store.position("INBOX") == (7, 40)
    assert store.problems() == []

    try:
        with store.transaction():
            store.set_position("INBOX", 7, 99)
            store.note_problem("triage: cannot connect", T0)
            raise Refused
    except Refused:
        pass
    assert store.position("INBOX") == (7, 40)
    assert store.problems() == []
    # and the store is still usable afterwards
    store.note_problem("triage: cannot connect", T0)
    assert len(store.problems()) == 1
    store.close()
