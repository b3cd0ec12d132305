"""Two proxies share the dialog -> PBX map over DMQ: a Replaces works on the proxy that never saw the call."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import sippgen as g
from harness import PBX2, PHONES, POLICY, PROXY, Kamailio, Sipp, header, render_cfg, running, scenario

PORTS = {"a": 5060, "b": 5070}


def start_proxy(tmp: Path, name: str, *, replicate: bool = True) -> Kamailio:
    home = tmp / name
    home.mkdir()
    shutil.copy(POLICY, home / "policy.toml")
    other = PORTS["b" if name == "a" else "a"]
    cfg = render_cfg(
        home,
        kamailio__listen=[f"udp:{PROXY}:{PORTS[name]}"],
        kamailio__dmq_peers=[f"sip:{PROXY}:{other}"] if replicate else [],
    )
    proxy = Kamailio(home, cfg, port=PORTS[name])
    proxy.start()
    return proxy


@pytest.mark.parametrize("replicate", [True, False], ids=["dmq", "no-dmq"])
def test_replaces_routed_by_the_other_proxy(tmp_path: Path, replicate: bool) -> None:
    proxies = []
    try:
        proxies = [
            start_proxy(tmp_path, "a", replicate=replicate),
            start_proxy(tmp_path, "b", replicate=replicate),
        ]
        uas = "\n".join(
            [
                g.uas_invite(),
                g.reply(200, "OK", to_tag="pbx-[call_number]", contact=True),
                '<recv request="ACK"/>',
            ]
        )
        pbx2 = Sipp(tmp_path, "pbx2", scenario(tmp_path, "pbx2", uas), PBX2, calls=2)
        dave = Sipp(
            tmp_path,
            "dave",
            scenario(
                tmp_path,
                "dave",
                g.answered_call("2001", "1003", from_tag="dave-ft"),
            ),
            PHONES["2001"],
            remote=f"{PROXY}:{PORTS['a']}",
            extra=["-cid_str", "dmq%u@test"],
        )
        alice = Sipp(
            tmp_path,
            "alice",
            scenario(
                tmp_path,
                "alice",
                "\n".join(
                    [
                        g.invite("1001", "1003").replace(
                            "Max-Forwards: 70",
                            "Max-Forwards: 70\nReplaces: dmq1@test;to-tag=pbx-1;from-tag=dave-ft",
                        ),
                        g.provisional(),
                        g.recv_response(200 if replicate else 481, rrs=True),
                        g.ack("1001", "1003"),
                    ]
                ),
            ),
            PHONES["1001"],
            remote=f"{PROXY}:{PORTS['b']}",
        )
        time.sleep(1.0)  # let the two DMQ nodes find each other
        with running(pbx2):
            assert dave.run() == 0, dave.output()
            time.sleep(0.5)  # replication is asynchronous
            assert alice.run() == 0, alice.output() + proxies[1].log()
            if replicate:
                assert pbx2.wait() == 0, pbx2.output()
        if not replicate:  # the control: without DMQ, proxy b does not know the dialog
            assert len(pbx2.received("INVITE")) == 1
            return
        invites = pbx2.received("INVITE")
        assert len(invites) == 2
        assert header(invites[1], "Replaces") == ["dmq1@test;to-tag=pbx-1;from-tag=dave-ft"]
        # The second INVITE came through proxy b, which learned the dialog only from proxy a.
        assert any(f"{PROXY}:{PORTS['b']}" in via for via in header(invites[1], "Via"))
    finally:
        for proxy in proxies:
            proxy.stop()
