"""The proxy's Prometheus counters (referee.kemi.metrics), on the fake KSR's xhttp_prom."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
from kemi_fixtures import PBX1, REPO, defines, refer, request

from referee.events import NotifyOutcome, ReferResponse
from referee.kemi import make_handler
from referee.kemi.metrics import (
    DECLARED,
    NOTIFIES,
    POLICY,
    REFER_RESPONSES,
    REFERS,
    WRITE_FAILURES,
    MeteredEventLog,
    ProxyMetrics,
    listen_address,
)
from referee.testing.fake_ksr import FakeKSR

LISTEN = '"tcp:127.0.1.60:9090"'


def proxy(tmp: Path, *, metrics: bool = True) -> tuple[FakeKSR, object]:
    values = defines(tmp)
    if metrics:
        values["REFEREE_METRICS_LISTEN"] = LISTEN
    fake = FakeKSR(defines=values)
    handler = make_handler(fake)
    handler.child_init(1)
    return fake, handler


def test_refers_are_counted_by_decision_rule_and_status(tmp_path: Path) -> None:
    fake, handler = proxy(tmp_path)
    for call_id, target in (("c1", "<sip:09001234567@lab.test>"), ("c2", "<sip:1003@lab.test>")):
        fake.request(refer(target, call_id=call_id))
        handler.ksr_request_route(None)  # type: ignore[attr-defined]
    fake.request(refer("<sip:09001234568@lab.test>", call_id="c3"))
    handler.ksr_request_route(None)  # type: ignore[attr-defined]
    refers = {labels: value for (name, labels), value in fake.prom.items() if name == REFERS}
    assert refers == {
        ("refused", "prefixes:deny:+449", "403"): 2,
        ("allowed", "pbx1-extensions", "202"): 1,
    }


def test_a_rejection_before_the_policy_is_counted_with_its_rule(tmp_path: Path) -> None:
    fake, handler = proxy(tmp_path)
    fake.request(refer(None))  # no Refer-To: bad input, answered by the adapter
    handler.ksr_request_route(None)  # type: ignore[attr-defined]
    ((labels, value),) = [(labels, v) for (name, labels), v in fake.prom.items() if name == REFERS]
    assert labels[0] == "refused" and labels[1] == "bad-input" and labels[2] == "400"
    assert value == 1


def test_responses_notifies_and_lost_events(tmp_path: Path) -> None:
    fake, handler = proxy(tmp_path)
    events = handler.events  # type: ignore[attr-defined]
    events.write(ReferResponse(1.0, "c1", 1, 202))
    events.write(ReferResponse(1.0, "c1", 2, 408, local=True))
    events.write(NotifyOutcome(1.0, "c1", 3, 1, status=200))
    events.write(NotifyOutcome(1.0, "c1", 4, 1, status=None, error="no message/sipfrag body"))
    assert fake.prom[(REFER_RESPONSES, ("202", "0"))] == 1
    assert fake.prom[(REFER_RESPONSES, ("408", "1"))] == 1
    assert fake.prom[(NOTIFIES, ("200",))] == 1
    assert fake.prom[(NOTIFIES, ("invalid",))] == 1
    assert fake.prom[(WRITE_FAILURES, ())] == 0  # created at startup, nothing lost yet
    lossy = MeteredEventLog(str(tmp_path / "missing" / "events.jsonl"), handler.metrics)  # type: ignore[attr-defined]
    lossy.write(NotifyOutcome(1.0, "c1", 5, 1, status=200))
    assert fake.prom[(WRITE_FAILURES, ())] == 1
    assert fake.prom[(NOTIFIES, ("200",))] == 2  # counted though the file lost it


def test_the_policy_gauge_names_the_version_in_force(tmp_path: Path) -> None:
    fake, handler = proxy(tmp_path)
    version = handler.policies.policy_version  # type: ignore[attr-defined]
    assert version
    assert fake.prom[(POLICY, (version,))] == 1
    metrics: ProxyMetrics = handler.metrics  # type: ignore[attr-defined]
    metrics.policy("newer")
    assert fake.prom[(POLICY, (version,))] == 0
    assert fake.prom[(POLICY, ("newer",))] == 1


def test_without_the_define_nothing_is_counted(tmp_path: Path) -> None:
    fake, handler = proxy(tmp_path, metrics=False)
    fake.request(refer("<sip:09001234567@lab.test>"))
    handler.ksr_request_route(None)  # type: ignore[attr-defined]
    assert fake.replies[0][0] == 403
    assert fake.prom == {}
    handler.ksr_xhttp_event(None)  # type: ignore[attr-defined]
    assert fake.http_replies[-1][0] == 404


def test_metrics_are_served_only_on_the_metrics_socket_and_path(tmp_path: Path) -> None:
    fake, handler = proxy(tmp_path)
    fake.pvs.update({"$Ri": "127.0.1.60", "$Rp": 9090})
    handler.ksr_xhttp_event(None)  # type: ignore[attr-defined]
    assert fake.http_replies[-1] == (200, "OK", "metrics")
    fake.http_path = "/other"
    handler.ksr_xhttp_event(None)  # type: ignore[attr-defined]
    assert fake.http_replies[-1][0] == 404
    fake.http_path = "/metrics"
    fake.pvs.update({"$Ri": "127.0.1.10", "$Rp": 5060})  # HTTP to the SIP TCP socket
    handler.ksr_xhttp_event(None)  # type: ignore[attr-defined]
    assert fake.http_replies[-1][0] == 404


def test_listen_address_reads_the_define() -> None:
    assert listen_address(FakeKSR(defines={"REFEREE_METRICS_LISTEN": LISTEN})) == ("127.0.1.60", 9090)
    assert listen_address(FakeKSR(defines={"REFEREE_METRICS_LISTEN": '""'})) is None
    assert listen_address(FakeKSR()) is None


def render(**values: object) -> str:
    env = jinja2.Environment(keep_trailing_newline=True)
    env.filters["hash"] = lambda value, algorithm: "0" * 32
    base = {
        "kamailio__pbxs": [{"name": "pbx1", "uri": f"sip:{PBX1}:5060"}],
        "kamailio__users": [],
        "kamailio__kemi_script": "/k.py",
    }
    return env.from_string(
        (REPO / "ansible" / "roles" / "kamailio" / "templates" / "kamailio.cfg.j2").read_text()
    ).render(**base, **values)


def test_the_cfg_declares_what_the_adapter_counts() -> None:
    text = render(kamailio__metrics_listen="tcp:127.0.0.10:9090")
    declared = {}
    for kind, spec in re.findall(r'modparam\("xhttp_prom", "prom_(counter|gauge)", "([^"]+)"\)', text):
        fields = dict(part.strip().split("=", 1) for part in spec.split(";") if part.strip())
        declared[fields["name"]] = (kind, tuple(fields["label"].split(":")) if "label" in fields else ())
    assert declared == DECLARED
    assert "listen=tcp:127.0.0.10:9090" in text
    assert '#!define REFEREE_METRICS_LISTEN "tcp:127.0.0.10:9090"' in text
    # The request reaches the same Python method: from the native routing's event route, or by name (KEMI).
    assert 'event_route[xhttp:request] {\n\tpython_exec("ksr_xhttp_event");' in text
    kemi = render(kamailio__metrics_listen="tcp:127.0.0.10:9090", kamailio__routing="kemi")
    assert 'modparam("xhttp", "event_callback", "ksr_xhttp_event")' in kemi
    assert "event_route[xhttp:request]" not in kemi


def test_the_cfg_without_metrics_loads_no_xhttp() -> None:
    text = render()
    assert "xhttp" not in text
    assert '#!define REFEREE_METRICS_LISTEN ""' in text


def test_a_notify_through_the_proxy_is_counted(tmp_path: Path) -> None:
    fake, handler = proxy(tmp_path)
    body = "SIP/2.0 200 OK\r\n"
    fake.request(
        request(
            "NOTIFY",
            to="<sip:1001@lab.test>;tag=tt",
            headers=["Event: refer;id=1", "Subscription-State: terminated", "Content-Type: message/sipfrag"],
            body=body,
            route=True,
        ),
        src_ip=PBX1,
    )
    handler.ksr_request_route(None)  # type: ignore[attr-defined]
    assert fake.prom[(NOTIFIES, ("200",))] == 1
