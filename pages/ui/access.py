"""Presenter (classroom) mode: whether this server lets its visitors change anything.

Read-only, the app still explores, slides and walks through the lesson, but launching,
cancelling and deleting runs, uploading checkpoints, drawing the demo set and typing data paths
are off: hidden with one line saying why (lock_note), and refused by every action handler itself
(refuse_if_read_only), so a crafted request changes nothing either.

$DETVIZ_READONLY decides ("1"/"true"/"yes"/"on": read-only, "0"/"false"/"no"/"off": writable);
unset or empty, the server address does: anything but this machine (an empty address listens on
every interface) is a classroom. Any other value is read-only, with a warning naming it.
"""

from __future__ import annotations

import os

import streamlit as st

ENV = "DETVIZ_READONLY"
ON = frozenset({"1", "true", "yes", "on"})
OFF = frozenset({"0", "false", "no", "off"})
LOCAL_ADDRESSES = frozenset({"localhost", "127.0.0.1", "::1"})  # only this machine can connect
LOCK = ":material/lock:"
WHERE = "the teacher does that on the machine itself (`make run` on localhost, or DETVIZ_READONLY=0)"


def is_read_only(setting: str | None, address: str | None) -> bool:
    """Whether a server with $DETVIZ_READONLY = `setting` (None: unset) listening on `address`
    (server.address; None or "": every interface) is read-only. An unknown setting: read-only."""
    value = (setting or "").strip().lower()
    if value in OFF:
        return False
    if value:  # ON, or a value we cannot read: fail safe
        return True
    return (address or "").strip().strip("[]").lower() not in LOCAL_ADDRESSES


def setting_problem(setting: str | None) -> str:
    """One sentence naming a $DETVIZ_READONLY value that is neither on, off nor empty; "" when fine."""
    value = (setting or "").strip().lower()
    if not value or value in ON | OFF:
        return ""
    return (f"{ENV}={setting!r} is not one of {', '.join(sorted(ON | OFF))}: the app is read-only "
            "(classroom mode) to be safe.")  # fmt: skip


def read_only() -> bool:
    """Whether this server is in classroom mode (is_read_only of the environment and server.address)."""
    return is_read_only(os.environ.get(ENV), st.get_option("server.address"))


def warn_if_misconfigured(container=st) -> None:
    """The one-line warning of setting_problem, when there is one (app.py's sidebar shows it)."""
    problem = setting_problem(os.environ.get(ENV))
    if problem:
        container.warning(problem, icon=":material/warning:")


def lock_note(what: str, container=st, full: bool = False) -> None:
    """The one line that stands where a hidden control would be: `what` ("uploading checkpoints")
    is off here, and who can do it (in the line when `full`, else in its help: for a narrow column)."""
    how = f"This server is read-only for its visitors; {WHERE}."
    if full:
        container.caption(f"{LOCK} Classroom mode: {what} is off here; {WHERE}.")
    else:
        container.caption(f"{LOCK} Classroom mode: {what} is off here.", help=how)


def refuse_if_read_only(action: str, container=st) -> bool:
    """Every action handler's first line: in classroom mode, says `action` ("Launching a run") was
    refused (st.error) and returns True; the handler then returns without touching anything."""
    if not read_only():
        return False
    container.error(f"{action} refused: this server is in classroom mode (read-only); {WHERE}.", icon=LOCK)
    return True
