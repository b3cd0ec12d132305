"""SIPp scenarios of the call-mix benchmark (tests/bench/call_mix.py).

One SIPp "call" of the phone (1002) is a call to 1001 (INVITE, challenged; 180, 200, ACK, BYE); every
fifth one first refreshes 1002's registration, every tenth one sends an in-dialog REFER (answered 202,
then a NOTIFY ``SIP/2.0 200 OK``) before the BYE. The PBX stand-in is registered as 1001, so Debian's
stock cfg finds it with its location lookup; referee's full proxy sends 1002's calls to its home PBX,
the same SIPp process. Which calls do what is decided on SIPp's call number (regular expressions on
its last digit), so every configuration gets exactly the same traffic.
"""

from __future__ import annotations

import sippgen as g

REFER_TO = "<sip:1003@lab.test>"
# The PBX's 180 and 200 are relayed by whichever Kamailio worker reads each: over UDP the 200 may overtake
# the 180, which then arrives while the phone already waits for the next answer.
LATE_180 = '<recv response="180" optional="true"/>'
NOTIFY_FIRST = '<recv request="NOTIFY" optional="true" next="notify_first"/>'


def _every(name: str, digits: str) -> str:
    """A SIPp boolean ``name``: the call number ends with one of ``digits``."""
    return (
        f'<ereg regexp="[{digits}]$" search_in="var" variable="callno" check_it="false" assign_to="{name}"/>'
    )


def phone() -> str:
    """1002's side of one call of the mix."""
    refer = g.in_dialog("REFER", "1002", "1001", 3, extra_headers=f"Refer-To: {REFER_TO}")
    refer_again = g.in_dialog(
        "REFER", "1002", "1001", 4, extra_headers=f"Refer-To: {REFER_TO}\n{g.credentials('1002')}"
    )
    register = g.register("1002", g.PASSWORDS["1002"], 200)
    return "\n".join(
        [
            "<nop><action>",
            '<assignstr assign_to="callno" value="[call_number]"/>',
            _every("plain", "1-46-9"),  # no REGISTER refresh before this call
            _every("nobranch", "1-9"),  # no REFER in this call
            "</action></nop>",
            '<nop test="plain" next="call"/>',
            register,
            '<label id="call"/>',
            g.answered_call("1002", "1001"),
            # The call lasts a moment: a REFER or BYE sent right after the ACK could overtake it (each is
            # relayed by whichever Kamailio worker reads it) and reach the PBX before the ACK.
            '<pause milliseconds="5"/>',
            '<nop test="nobranch" next="bye"/>',
            refer,
            LATE_180,
            '<recv response="100" optional="true"/>',
            # Only a proxy that authenticates in-dialog REFERs (the stock cfg with referee) challenges it.
            '<recv response="407" optional="true" auth="true" next="refer_again"/>',
            NOTIFY_FIRST,
            '<recv response="202" next="notify"/>',
            '<label id="refer_again"/>',
            refer_again,
            '<recv response="100" optional="true"/>',
            NOTIFY_FIRST,
            '<recv response="202" next="notify"/>',
            # Without referee's hold (the stock cfg alone) the NOTIFY may overtake the 202.
            '<label id="notify_first"/>',
            g.reply(200, "OK"),
            '<recv response="202" next="bye"/>',
            '<label id="notify"/>',
            '<recv request="NOTIFY"/>',
            g.reply(200, "OK"),
            '<label id="bye"/>',
            g.in_dialog("BYE", "1002", "1001", 9),
            LATE_180,
            g.recv_response(200),
        ]
    )


def pbx() -> str:
    """The PBX stand-in (1001): answers each call; accepts a REFER and reports its outcome."""
    return "\n".join(
        [
            g.uas_invite(capture_tag=True),
            g.reply(180, "Ringing", to_tag="pbx-[call_number]", contact=True),
            g.reply(200, "OK", to_tag="pbx-[call_number]", contact=True),
            '<recv request="ACK"/>',
            '<recv request="REFER" optional="true" next="refer"/>',
            '<recv request="BYE" next="bye"/>',
            '<label id="refer"/>',
            g.reply(202, "Accepted", contact=True),
            g.uas_notify("SIP/2.0 200 OK", "terminated;reason=noresource", 1),
            '<recv response="200"/>',
            '<recv request="BYE"/>',
            '<label id="bye"/>',
            g.reply(200, "OK"),
        ]
    )
