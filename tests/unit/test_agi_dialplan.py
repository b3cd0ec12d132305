"""The dialplan snippet agrees with the guard: routes, script, variables, labels, fail-closed order.

No Asterisk here (the lab scenarios run the real one): these read the file as pbx_config
does, one ``exten``/``same`` line at a time, and check what would silently break a transfer.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from referee.agi.daemon import TRANSFER_GUARD
from referee.agi.guard import OUTPUT_VARIABLES, QUERY_VARIABLES, RESULT_VARIABLE
from referee.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "ansible" / "roles" / "asterisk" / "templates" / "extensions_referee_transfer.conf"

# extension -> list of (label, application, arguments), per context
Dialplan = dict[str, dict[str, list[tuple[str | None, str, str]]]]


def parse(text: str) -> Dialplan:
    plan: Dialplan = {}
    context = exten = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip() if not raw.lstrip().startswith(";") else ""
        if not line:
            continue
        if line.startswith("["):
            context = line.strip("[]")
            plan[context] = {}
            continue
        assert context is not None, raw
        kind, _, rest = line.partition("=>")
        if kind.strip() == "exten":
            exten, priority, step = (part.strip() for part in rest.split(",", 2))
            assert priority == "1", raw
        else:
            assert kind.strip() == "same" and exten is not None, raw
            priority, step = (part.strip() for part in rest.split(",", 1))
            assert priority.startswith("n"), raw
        label = re.fullmatch(r"n\((\w+)\)", priority)
        app, _, args = step.partition("(")
        assert args.endswith(")"), raw
        plan[context].setdefault(exten, []).append((label.group(1) if label else None, app, args[:-1]))
    return plan


@pytest.fixture(scope="module")
def plan() -> Dialplan:
    return parse(SNIPPET.read_text())


def test_the_header_says_how_to_include_it() -> None:
    head = SNIPPET.read_text()
    assert "#include extensions_referee_transfer.conf" in head
    assert "Set(__TRANSFER_CONTEXT=referee-transfer)" in head


def test_transfer_context_handles_numbers_and_external_replaces(plan: Dialplan) -> None:
    assert set(plan["referee-transfer"]) == {"_[+0-9].", "external_replaces"}


@pytest.mark.parametrize("exten", ["_[+0-9].", "external_replaces"])
def test_guard_before_dial_and_refusal_with_cause_21(plan: Dialplan, exten: str) -> None:
    steps = plan["referee-transfer"][exten]
    apps = [app for _, app, _ in steps]
    assert apps.index("Gosub") < apps.index("GotoIf") < apps.index("Dial")
    gosub = steps[apps.index("Gosub")][2]
    assert gosub == (
        "referee-guard,s,1(external_replaces)"
        if exten == "external_replaces"
        else "referee-guard,s,1(${EXTEN})"
    )
    assert steps[apps.index("GotoIf")][2] == '$["${REFEREE_ALLOWED}" != "1"]?refused'
    refused = [label for label, _, _ in steps].index("refused")
    assert [app for _, app, _ in steps[refused:]] == ["Log", "Hangup"]
    assert steps[refused][2].startswith("WARNING,")
    assert steps[-1][1:] == ("Hangup", "21")
    dial = steps[apps.index("Dial")][2]
    assert dial.startswith("PJSIP/${REFEREE_PROXY}/")
    if exten == "external_replaces":
        assert dial == "PJSIP/${REFEREE_PROXY}/${SIPREFERTOHDR},30"
    else:
        assert dial == "PJSIP/${REFEREE_PROXY}/sip:${REFEREE_TARGET_USER}@${REFEREE_TENANT},30"


def test_guard_tries_fastagi_then_the_process_agi_and_fails_closed(plan: Dialplan) -> None:
    steps = plan["referee-guard"]["s"]
    assert steps[0][1:] == ("Set", "REFEREE_ALLOWED=0")  # before any guard runs
    agis = [args for _, app, args in steps if app == "AGI"]
    # One round trip: the inputs in the request (FastAGI: the URL's query; process AGI: its argument).
    assert agis == [f"${{url}}/{TRANSFER_GUARD}?${{query}}", "referee_transfer_guard.py,?${query}"]
    # Without a REFEREE_FASTAGI global: where `referee fastagi` listens by default, not a lab address.
    defaults = build_parser().parse_args(["fastagi"])
    url = f"agi://{defaults.listen}:{defaults.port}"
    assert url == "agi://127.0.0.1:4573"
    assert ("Set", f"LOCAL(url)={url}") in [(app, args) for _, app, args in steps]
    script = ROOT / "ansible" / "roles" / "referee" / "files" / "referee_transfer_guard.py"
    assert script.is_file() and script.stat().st_mode & 0o111
    assert steps[-1][1] == "Return"


def test_every_goto_label_exists_in_its_extension(plan: Dialplan) -> None:
    for context, extens in plan.items():
        for exten, steps in extens.items():
            labels = {label for label, _, _ in steps if label}
            for _, app, args in steps:
                if app == "GotoIf":
                    target = args.rsplit("?", 1)[1]
                    assert target in labels, f"{context},{exten}: GotoIf to unknown label {target}"


def test_execif_never_carries_a_colon(plan: Dialplan) -> None:
    # ExecIf(expr?true:false) splits at ':' - an agi:// URL or a "x: y" message would break it.
    for extens in plan.values():
        for steps in extens.values():
            for _, app, args in steps:
                if app == "ExecIf":
                    assert ":" not in args.split("?", 1)[1], args


def test_the_dialplan_reads_only_variables_the_guard_sets(plan: Dialplan) -> None:
    read = set(re.findall(r"\$\{(REFEREE_\w+)\}", SNIPPET.read_text()))
    # Set by the snippet itself (from the global REFEREE_PROXY_ENDPOINT), the channel's own domain (an
    # input), and the guard's one answer.
    own = {"REFEREE_PROXY", "REFEREE_DOMAIN", RESULT_VARIABLE}
    assert read - own <= set(OUTPUT_VARIABLES)
    assert {"REFEREE_ALLOWED", "REFEREE_STATUS", "REFEREE_REASON", "REFEREE_RULE"} <= read


def test_the_request_carries_every_input_urlencoded(plan: Dialplan) -> None:
    steps = plan["referee-guard"]["s"]
    query = next(args for _, app, args in steps if app == "Set" and args.startswith("LOCAL(query)="))
    pairs = [pair.split("=", 1) for pair in query.removeprefix("LOCAL(query)=").split("&")]
    expected = {"target": "ARG1", **QUERY_VARIABLES}
    assert [key for key, _ in pairs] == list(expected)
    for key, value in pairs:
        assert value == f"${{URIENCODE(${{{expected[key]}}})}}", key


def test_the_answer_is_split_in_the_guards_order_allowed_last(plan: Dialplan) -> None:
    steps = plan["referee-guard"]["s"]
    answer = [label for label, _, _ in steps].index("answer")
    sets = [args for _, app, args in steps[answer:] if app == "Set"]
    assert [args.split("=", 1)[0] for args in sets] == list(OUTPUT_VARIABLES)
    for number, args in enumerate(sets[:-1], 1):
        assert args.split("=", 1)[1] == f"${{URIDECODE(${{CUT({RESULT_VARIABLE},|,{number})}})}}"
    # REFEREE_ALLOWED is 1 only when the last field is exactly 1 (an answer cut short has no such field).
    last = len(OUTPUT_VARIABLES)
    assert sets[-1] == f'REFEREE_ALLOWED=${{IF($["${{CUT({RESULT_VARIABLE},|,{last})}}" = "1"]?1:0)}}'
    assert steps[-1][1] == "Return"
    # Without an answer from either guard, the subroutine returns before the split: REFEREE_ALLOWED stays 0.
    assert [app for _, app, _ in steps[answer - 2 : answer]] == ["Log", "Return"]


# The dialplan functions the snippet uses, and the module each lives in (Asterisk 22).
FUNCTION_MODULES = {
    "URIENCODE": "func_uri.so",
    "URIDECODE": "func_uri.so",
    "CUT": "func_cut.so",
    "IF": "func_logic.so",
    "GLOBAL": "func_global.so",
    "LOCAL": "app_stack.so",
}


def test_the_asterisk_role_loads_every_function_the_snippet_uses() -> None:
    # modules.conf has autoload = no: a function whose module is not listed reads as empty (the lab
    # once sent `target=&domain=...` because func_uri was missing).
    used = set(re.findall(r"\$\{([A-Z]+)\(", SNIPPET.read_text())) | {"LOCAL"}
    assert used <= set(FUNCTION_MODULES), used - set(FUNCTION_MODULES)
    modules = ROOT / "ansible" / "roles" / "asterisk" / "templates" / "modules.conf.j2"
    loaded = set(re.findall(r"^load = (\S+)$", modules.read_text(), re.MULTILINE))
    assert {FUNCTION_MODULES[name] for name in used} <= loaded
