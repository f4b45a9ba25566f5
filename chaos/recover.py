"""`chaos recover`: undo what runs that did not end cleanly left, from their journals."""

from __future__ import annotations

import shutil

from chaos.errors import ExitStatus
from chaos.journal import STALE_EMPTY, sweep, sweep_starting, unfinished


def recover_all(state_dir=None, force: bool = False, echo=print) -> int:
    """Roll back every unfinished journal whose run is gone; the exit status."""
    status = ExitStatus.OK
    journals = unfinished(state_dir)
    # Runs stopped while removing (or creating) their folder: nothing to undo, only the folder.
    swept = sweep(state_dir)
    for run_id in swept:
        echo(f"{run_id}: removed the folder of a run that had finished")
    for run_id in sweep_starting(state_dir):
        swept.append(run_id)
        echo(f"{run_id}: removed the folder of a run stopped while starting (nothing applied yet)")
    if not journals:
        if not swept:
            echo("nothing to recover")
        return status
    for journal in journals:
        if journal.owner_pid is None and not force and journal.age() <= STALE_EMPTY:
            # No owner on record yet: never take an incomplete read for a dead run.
            echo(f"{journal.run_id}: no owner on record yet (starting?); skipped")
            continue
        if journal.owner_alive() and not force:
            echo(f"{journal.run_id}: still running (pid {journal.owner_pid}); skipped (--force to recover anyway)")
            continue
        if journal.detached and not force:
            from chaos.lab.control import detached_state

            state = detached_state(journal, state_dir)
            if state == "up":
                echo(f"{journal.run_id}: a lab that is up (`chaos lab down` stops it); skipped")
                continue
            echo(f"{journal.run_id}: " + ("a lab whose processes died: cleaning it up" if state == "died"
                                         else "a lab whose `chaos lab up` never finished: cleaning it up"))
        pending = journal.pending()
        journal.reopen()
        for entry in sorted(pending, key=lambda e: e.seq, reverse=True):
            echo(f"{journal.run_id}: undo {entry.what or entry.kind}")
        failures = journal.undo_entries(pending)
        for failure in failures:
            echo(f"{journal.run_id}: could not undo {failure}")
        if failures:
            status = ExitStatus.INJECTION
            journal.close()
            continue
        journal.finish()
        shutil.rmtree(journal.run_dir, ignore_errors=True)
        echo(f"{journal.run_id}: recovered ({len(pending)} change(s) undone)")
    from chaos.lab.control import forget_if_gone

    forget_if_gone(state_dir)  # a lab recovered here is no longer "up"
    return status
