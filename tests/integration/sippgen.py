"""SIPp scenario snippets for the proxy integration tests (phones as UAC, PBX stand-ins as UAS)."""

from __future__ import annotations

from harness import PASSWORDS


def send(message: str, *, retrans: bool = True) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]  # empty: unused slot
    text = "\n".join(lines)
    attr = ' retrans="500"' if retrans else ""
    return f"<send{attr}>\n<![CDATA[\n\n{text}\nContent-Length: [len]\n\n]]>\n</send>"


def send_body(message: str, body: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines()]
    return (
        '<send retrans="500">\n<![CDATA[\n\n'
        + "\n".join(lines)
        + "\nContent-Length: [len]\n\n"
        + body
        + "\n]]>\n</send>"
    )


def recv_response(code: int, *, rrs: bool = False) -> str:
    extra = ' rrs="true"' if rrs else ""
    return f'<recv response="{code}"{extra}/>'


def provisional() -> str:
    return '<recv response="100" optional="true"/>\n<recv response="180" optional="true"/>'


def reply(code: int, reason: str, *, to_tag: str = "", contact: bool = False) -> str:
    to = "[last_To:]" + (f";tag={to_tag}" if to_tag else "")
    contact_line = "Contact: <sip:[local_ip]:[local_port]>" if contact else ""
    return send(
        f"""
        SIP/2.0 {code} {reason}
        [last_Via:]
        [last_From:]
        {to}
        [last_Call-ID:]
        [last_CSeq:]
        [last_Record-Route:]
        {contact_line}
        """,
        retrans=False,
    )


def credentials(user: str) -> str:
    """SIPp's keyword answering the last 407 (or 401) with ``user``'s digest credentials."""
    return f"[authentication username={user} password={PASSWORDS[user]}]"


def challenged(first: str, again: str, *, invite: bool = False) -> str:
    """``first`` sent, its 407 taken (and ACKed for an INVITE), then ``again`` with credentials."""
    steps = [first, '<recv response="100" optional="true"/>', '<recv response="407" auth="true"/>']
    if invite:
        steps.append(
            send(
                """
                ACK [next_url] SIP/2.0
                [last_Via:]
                [last_From:]
                [last_To:]
                [last_Call-ID:]
                CSeq: 1 ACK
                Max-Forwards: 70
                """,
                retrans=False,
            )
        )
    return "\n".join([*steps, again])


def ood_refer(refer_to: str, expect: int, *, user: str = "1002", extra_headers: str = "") -> str:
    """An out-of-dialog REFER from phone ``user`` to 1001 (challenged, then authenticated), expecting ``expect``."""

    def refer(cseq: int, auth: str) -> str:
        return send(
            f"""
            REFER sip:1001@lab.test SIP/2.0
            Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
            From: <sip:{user}@lab.test>;tag=[pid]SIPpTag00[call_number]
            To: <sip:1001@lab.test>
            Call-ID: [call_id]
            CSeq: {cseq} REFER
            Contact: <sip:{user}@[local_ip]:[local_port]>
            Max-Forwards: 70
            Refer-To: {refer_to}
            {extra_headers}
            {auth}
            """
        )

    return "\n".join(
        [
            challenged(refer(1, ""), refer(2, credentials(user))),
            '<recv response="100" optional="true"/>',
            recv_response(expect),
        ]
    )


def uas_refer(to_tag: str = "pbx-[call_number]") -> str:
    """A PBX that accepts one out-of-dialog REFER with 202."""
    return '<recv request="REFER"/>\n' + reply(202, "Accepted", to_tag=to_tag, contact=True)


def invite(
    user: str,
    target: str,
    *,
    call_id: str = "[call_id]",
    from_tag: str = "[pid]SIPpTag00[call_number]",
    auth: bool = True,
) -> str:
    """An INVITE from ``user``; a phone's (``auth``) is challenged first and sent again with CSeq 2."""

    def message(cseq: int, credential_line: str) -> str:
        return send(
            f"""
            INVITE sip:{target}@lab.test SIP/2.0
            Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
            From: <sip:{user}@lab.test>;tag={from_tag}
            To: <sip:{target}@lab.test>
            Call-ID: {call_id}
            CSeq: {cseq} INVITE
            Contact: <sip:{user}@[local_ip]:[local_port]>
            Max-Forwards: 70
            {credential_line}
            """
        )

    if not auth:
        return message(1, "")
    return challenged(message(1, ""), message(2, credentials(user)), invite=True)


def ack(
    user: str,
    target: str,
    *,
    call_id: str = "[call_id]",
    from_tag: str = "[pid]SIPpTag00[call_number]",
    auth: bool = True,
) -> str:
    """The ACK of the 200 to :func:`invite` (whose CSeq is 2 after a challenge)."""
    return send(
        f"""
        ACK [next_url] SIP/2.0
        Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
        [routes]
        From: <sip:{user}@lab.test>;tag={from_tag}
        To: <sip:{target}@lab.test>[peer_tag_param]
        Call-ID: {call_id}
        CSeq: {2 if auth else 1} ACK
        Max-Forwards: 70
        """,
        retrans=False,
    )


def answered_call(user: str, target: str, *, from_tag: str = "[pid]SIPpTag00[call_number]") -> str:
    """INVITE, any provisional, 200 (route set recorded), ACK: the caller's side of an answered call."""
    return "\n".join(
        [
            invite(user, target, from_tag=from_tag),
            provisional(),
            recv_response(200, rrs=True),
            ack(user, target, from_tag=from_tag),
        ]
    )


def in_dialog(
    method: str,
    user: str,
    target: str,
    cseq: int,
    *,
    call_id: str = "[call_id]",
    from_tag: str = "[pid]SIPpTag00[call_number]",
    extra_headers: str = "",
) -> str:
    return send(
        f"""
        {method} [next_url] SIP/2.0
        Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
        [routes]
        From: <sip:{user}@lab.test>;tag={from_tag}
        To: <sip:{target}@lab.test>[peer_tag_param]
        Call-ID: {call_id}
        CSeq: {cseq} {method}
        Contact: <sip:{user}@[local_ip]:[local_port]>
        Max-Forwards: 70
        {extra_headers}
        """
    )


def uas_invite(*, capture_tag: bool = False) -> str:
    """A PBX receiving an INVITE; keeps the route set, and the caller's tag for its own requests."""
    if not capture_tag:  # SIPp rejects a variable that is set but never used
        return '<recv request="INVITE" rrs="true"/>'
    # The From tag is the last parameter in SIPp's messages.
    return (
        '<recv request="INVITE" rrs="true">\n<action>\n'
        '<ereg regexp="[^=]*$" search_in="hdr" header="From:" assign_to="peertag"/>\n'
        "</action>\n</recv>"
    )


def uas_notify(status_line: str, state: str, cseq: int, *, local: str = "1001", peer: str = "1002") -> str:
    """An in-dialog NOTIFY from the PBX (UAS side of the INVITE dialog) carrying a sipfrag."""
    return send_body(
        f"""
        NOTIFY [next_url] SIP/2.0
        Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
        [routes]
        From: <sip:{local}@lab.test>;tag=pbx-[call_number]
        To: <sip:{peer}@lab.test>;tag=[$peertag]
        [last_Call-ID:]
        CSeq: {cseq} NOTIFY
        Contact: <sip:{local}@[local_ip]:[local_port]>
        Max-Forwards: 70
        Event: refer
        Subscription-State: {state}
        Content-Type: message/sipfrag
        """,
        status_line,
    )


def uas_refer_outcome() -> list[str]:
    """The referee's side of an in-dialog REFER: 202, then NOTIFYs 100 Trying and 200 OK (both answered)."""
    return [
        '<recv request="REFER"/>',
        reply(202, "Accepted", contact=True),
        uas_notify("SIP/2.0 100 Trying", "active;expires=60", 1),
        '<recv response="200"/>',
        uas_notify("SIP/2.0 200 OK", "terminated;reason=noresource", 2),
        '<recv response="200"/>',
    ]


def pbx_carries_out_transfer() -> str:
    """The PBX's side of an in-dialog transfer: answers the call, accepts the REFER (202), NOTIFYs
    100 then 200 (subscription terminated), answers the BYE."""
    return "\n".join(
        [
            uas_invite(capture_tag=True),
            reply(200, "OK", to_tag="pbx-[call_number]", contact=True),
            '<recv request="ACK"/>',
            *uas_refer_outcome(),
            '<recv request="BYE"/>',
            reply(200, "OK"),
        ]
    )


def phone_transfers(user: str, peer: str, refer_to: str) -> str:
    """The phone's side of it: calls ``peer``, sends the REFER, answers both NOTIFYs, hangs up."""
    return "\n".join(
        [
            answered_call(user, peer),
            in_dialog("REFER", user, peer, 2, extra_headers=f"Refer-To: {refer_to}"),
            recv_response(202),
            '<recv request="NOTIFY"/>',
            reply(200, "OK"),
            '<recv request="NOTIFY"/>',
            reply(200, "OK"),
            in_dialog("BYE", user, peer, 3),
            recv_response(200),
        ]
    )


def register(user: str, password: str, expect: int) -> str:
    base = f"""
        REGISTER sip:lab.test SIP/2.0
        Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
        From: <sip:{user}@lab.test>;tag=[pid]SIPpTag00[call_number]
        To: <sip:{user}@lab.test>
        Call-ID: [call_id]
        Contact: <sip:{user}@[local_ip]:[local_port]>
        Expires: 300
        Max-Forwards: 70
        """
    return "\n".join(
        [
            send(base + "CSeq: 1 REGISTER"),
            '<recv response="401" auth="true"/>',
            send(base + f"CSeq: 2 REGISTER\n[authentication username={user} password={password}]"),
            f'<recv response="{expect}"/>',
        ]
    )
