"""Baseline KEMI script for the proxy benchmark: relays every request, decides nothing.

Loaded by the same kamailio.cfg as referee_kemi.py (see proxy_refer_ratio.py): same
modules, same tm relay and record-route, but no policy, no rewrite, no event log.
"""

import KSR  # type: ignore[import-not-found]  # provided by app_python3 inside Kamailio


class PassThrough:
    def __init__(self) -> None:
        pbxs = str(KSR.kx.get_def("REFEREE_PBXS")).strip('"').split()
        self.pbx = pbxs[0].partition("=")[2]

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
