"""Every move of a transfer, keyed by (flow, state, trigger): one table, read by the tracker.

States (:class:`referee.events.State`): ``starting`` (asked, the PBX has not acted yet),
``ringback`` (the recipient rings), ``answered`` (the recipient answered), and the final
``completed``, ``cancelled`` (the initiator or the recipient gave up; the initiator is back with
the transferred party), ``abandoned`` (the transferred party left), ``failed`` (the PBX refused
or the call failed), ``unconfirmed`` (a REFER accepted with ``Refer-Sub: false``: the audit
trail's, never the tracker's). A final state never moves.

Triggers: what the tracker made of an AMI event (or an operator action) about one of the
transfer's channels.

================== ==================================================================================
trigger            seen as
================== ==================================================================================
``consultation``   attended: ``Newchannel`` of the ``Local/<exten>@<context>-…;1`` consultation channel
``dialling``       blind: ``DialBegin`` from the transferred party (the recipient's channel is bound)
``answered``       attended: the recipient's ``Newstate`` Up, or an answered channel swapped in for it
                   (``BridgeEnter`` with ``SwapUniqueid``: the Local channel optimised away)
``dial-answered``  blind: the transferred party's ``DialEnd`` with ``DialStatus: ANSWER``
``dial-failed``    blind: the same with any other ``DialStatus``
``bridged``        the transferred party and the recipient are in one bridge
``pbx-success``    ``BlindTransfer`` / ``AttendedTransfer`` with ``Result: Success``
``pbx-failure``    the same with any other result
``cancel``         the operator's cancel action was accepted (``CancelAtxfer``, ``Hangup``)
``action-failed``  the operator's action was refused by the PBX or could not be sent
``<role>-hangup``  ``Hangup`` of the initiator's, transferred party's or recipient's channel (table below)
================== ==================================================================================

The moves for every trigger but a hangup (``=``: the trigger applies and the state stays; a
(flow, state, trigger) not listed here is ignored). ``MOVES`` is this table plus the hangup
table; the tests read both and check every cell against the code.

======== ========= ============= =========
flow     state     trigger       next
======== ========= ============= =========
attended starting  consultation  ringback
attended starting  pbx-success   completed
attended starting  pbx-failure   failed
attended starting  action-failed failed
attended ringback  answered      answered
attended ringback  pbx-success   completed
attended ringback  pbx-failure   failed
attended ringback  cancel        cancelled
attended answered  pbx-success   completed
attended answered  pbx-failure   failed
attended answered  cancel        cancelled
blind    starting  pbx-success   ringback
blind    starting  pbx-failure   failed
blind    starting  dialling      ringback
blind    starting  dial-answered answered
blind    starting  dial-failed   failed
blind    starting  action-failed failed
blind    ringback  pbx-success   =
blind    ringback  pbx-failure   failed
blind    ringback  dialling      =
blind    ringback  dial-answered answered
blind    ringback  dial-failed   failed
blind    ringback  bridged       completed
blind    ringback  cancel        cancelled
blind    answered  pbx-success   =
blind    answered  pbx-failure   failed
blind    answered  dial-failed   failed
blind    answered  bridged       completed
blind    answered  cancel        cancelled
======== ========= ============= =========

What every party's hangup does, in every state (``=`` stays in that state):

======== =========== ========= =========== =========
flow     state       initiator transferred recipient
======== =========== ========= =========== =========
attended starting    failed    abandoned   failed
attended ringback    completed abandoned   cancelled
attended answered    completed abandoned   cancelled
attended completed   =         =           =
attended cancelled   =         =           =
attended abandoned   =         =           =
attended failed      =         =           =
attended unconfirmed =         =           =
blind    starting    =         abandoned   failed
blind    ringback    =         abandoned   failed
blind    answered    =         abandoned   failed
blind    completed   =         =           =
blind    cancelled   =         =           =
blind    abandoned   =         =           =
blind    failed      =         =           =
blind    unconfirmed =         =           =
======== =========== ========= =========== =========

Why: in an attended transfer the initiator hanging up is how Asterisk completes it (while the
recipient still rings it becomes a "blond" transfer); the recipient hanging up returns the
initiator to the transferred party. In a blind transfer the initiator leaving is expected
and changes nothing; the outcome is the transferred party's call to the recipient.
"""

from __future__ import annotations

from enum import StrEnum

from referee.events import Flow, State
from referee.orchestrator.transfer import Role


class Trigger(StrEnum):
    CONSULTATION = "consultation"
    DIALLING = "dialling"
    ANSWERED = "answered"
    DIAL_ANSWERED = "dial-answered"
    DIAL_FAILED = "dial-failed"
    BRIDGED = "bridged"
    PBX_SUCCESS = "pbx-success"
    PBX_FAILURE = "pbx-failure"
    CANCEL = "cancel"
    ACTION_FAILED = "action-failed"
    INITIATOR_HANGUP = "initiator-hangup"
    TRANSFERRED_HANGUP = "transferred-hangup"
    RECIPIENT_HANGUP = "recipient-hangup"


HANGUP_OF = {
    Role.INITIATOR: Trigger.INITIATOR_HANGUP,
    Role.TRANSFERRED: Trigger.TRANSFERRED_HANGUP,
    Role.RECIPIENT: Trigger.RECIPIENT_HANGUP,
}

F, S, T = Flow, State, Trigger
_LIVE = (S.STARTING, S.RINGBACK, S.ANSWERED)

# The first table of the docstring, as (flow, state) -> {trigger: next}.
_ON_EVENT: dict[tuple[Flow, State], dict[Trigger, State]] = {
    (F.ATTENDED, S.STARTING): {
        T.CONSULTATION: S.RINGBACK,
        T.PBX_SUCCESS: S.COMPLETED,
        T.PBX_FAILURE: S.FAILED,
        T.ACTION_FAILED: S.FAILED,
    },
    (F.ATTENDED, S.RINGBACK): {
        T.ANSWERED: S.ANSWERED,
        T.PBX_SUCCESS: S.COMPLETED,
        T.PBX_FAILURE: S.FAILED,
        T.CANCEL: S.CANCELLED,
    },
    (F.ATTENDED, S.ANSWERED): {T.PBX_SUCCESS: S.COMPLETED, T.PBX_FAILURE: S.FAILED, T.CANCEL: S.CANCELLED},
    (F.BLIND, S.STARTING): {
        T.PBX_SUCCESS: S.RINGBACK,
        T.PBX_FAILURE: S.FAILED,
        T.DIALLING: S.RINGBACK,
        T.DIAL_ANSWERED: S.ANSWERED,
        T.DIAL_FAILED: S.FAILED,
        T.ACTION_FAILED: S.FAILED,
    },
    (F.BLIND, S.RINGBACK): {
        T.PBX_SUCCESS: S.RINGBACK,
        T.PBX_FAILURE: S.FAILED,
        T.DIALLING: S.RINGBACK,
        T.DIAL_ANSWERED: S.ANSWERED,
        T.DIAL_FAILED: S.FAILED,
        T.BRIDGED: S.COMPLETED,
        T.CANCEL: S.CANCELLED,
    },
    (F.BLIND, S.ANSWERED): {
        T.PBX_SUCCESS: S.ANSWERED,
        T.PBX_FAILURE: S.FAILED,
        T.DIAL_FAILED: S.FAILED,
        T.BRIDGED: S.COMPLETED,
        T.CANCEL: S.CANCELLED,
    },
}

# The hangup table, live states only (a final state stays whoever hangs up).
R = Role
_ON_HANGUP: dict[tuple[Flow, State], dict[Role, State]] = {
    (F.ATTENDED, S.STARTING): {R.INITIATOR: S.FAILED, R.TRANSFERRED: S.ABANDONED, R.RECIPIENT: S.FAILED},
    (F.ATTENDED, S.RINGBACK): {
        R.INITIATOR: S.COMPLETED,
        R.TRANSFERRED: S.ABANDONED,
        R.RECIPIENT: S.CANCELLED,
    },
    (F.ATTENDED, S.ANSWERED): {
        R.INITIATOR: S.COMPLETED,
        R.TRANSFERRED: S.ABANDONED,
        R.RECIPIENT: S.CANCELLED,
    },
    **{
        (F.BLIND, state): {R.INITIATOR: state, R.TRANSFERRED: S.ABANDONED, R.RECIPIENT: S.FAILED}
        for state in _LIVE
    },
}

HANGUP: dict[tuple[Flow, State, Role], State] = {
    (flow, state, role): _ON_HANGUP.get((flow, state), {}).get(role, state)
    for flow in Flow
    for state in State
    for role in Role
}

MOVES: dict[tuple[Flow, State, Trigger], State] = {
    **{
        (flow, state, trigger): after
        for (flow, state), row in _ON_EVENT.items()
        for trigger, after in row.items()
    },
    **{(flow, state, HANGUP_OF[role]): after for (flow, state, role), after in HANGUP.items()},
}


def next_state(flow: Flow, state: State, trigger: Trigger) -> State | None:
    """Where ``trigger`` takes a transfer in ``state``; None when it does not apply there."""
    if state.final:
        return None
    return MOVES.get((flow, state, trigger))


_HANGUP_RESULT = {
    (Flow.ATTENDED, S.COMPLETED): "completed by the initiator hanging up",
    (Flow.ATTENDED, S.CANCELLED): "the recipient hung up",
    (Flow.ATTENDED, S.FAILED): "hung up before the consultation call started",
}


def hangup_outcome(flow: Flow, state: State, role: Role) -> tuple[State, str]:
    """The next state when ``role`` hangs up, and why (empty when nothing changes)."""
    after = HANGUP[(flow, state, role)]
    if after == state:
        return after, ""
    if after == S.ABANDONED:
        return after, "the transferred party hung up"
    if flow == Flow.BLIND and after == S.FAILED:
        return after, "the recipient hung up before the transfer completed"
    return after, _HANGUP_RESULT.get((flow, after), f"the {role} hung up")
