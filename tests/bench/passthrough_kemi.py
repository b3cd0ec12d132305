"""Baseline KEMI script for the proxy benchmark: relays every request, decides nothing.

Loaded by the same kamailio.cfg as referee_kemi.py (see proxy_refer_ratio.py): same
modules, same tm relay and record-route, but no policy, no rewrite, no event log. A new request
from anyone but the PBX is authenticated as referee's proxy does it (digest against the same
credentials file), so that the benchmark's ratio is that of the REFER check alone.
"""

import KSR  # type: ignore[import-not-found]  # provided by app_python3 inside Kamailio

AUTH_HA1, AUTH_QOP = 1, 1  # pv_auth_check: the password given is the HA1; auth_challenge: qop=auth


def define(name: str) -> str:
    return str(KSR.kx.get_def(name)).strip('"')


class PassThrough:
    def __init__(self) -> None:
        pbxs = define("REFEREE_PBXS").split()
        self.pbx = pbxs[0].partition("=")[2]
        self.pbx_host = self.pbx.split(":")[1]
        self.realm = define("REFEREE_DOMAIN")
        with open(define("REFEREE_CREDENTIALS")) as lines:  # user:ha1:pbx
            self.ha1 = {p[0]: p[1] for p in (line.strip().split(":") for line in lines) if len(p) == 3}

    def authenticated(self) -> bool:
        if KSR.kx.get_srcip() == self.pbx_host:
            return True
        ha1 = self.ha1.get(KSR.kx.get_au() or "")
        if ha1 is None or KSR.auth.pv_auth_check(self.realm, ha1, AUTH_HA1, 0) < 0:
            KSR.auth.auth_challenge(self.realm, AUTH_QOP)
            return False
        KSR.auth.consume_credentials()
        return True

    def child_init(self, rank: int) -> int:
        return 0

    def ksr_request_route(self, msg: object) -> int:
        if KSR.is_method("OPTIONS"):  # the harness's liveness probe
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        if KSR.tm.t_check_trans() == 0:
            return 1
        if KSR.siputils.has_totag() > 0:
            if KSR.rr.loose_route() > 0:
                KSR.tm.t_relay()
            return 1
        if not self.authenticated():
            return 1
        KSR.rr.record_route()
        KSR.setdsturi(self.pbx)
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_send_reply(500, "Relay Failed")
        return 1

    def ksr_reply_route(self, msg: object) -> int:
        return 1

    def ksr_onsend_route(self, msg: object) -> int:
        return 1


def mod_init() -> PassThrough:
    return PassThrough()
