"""referee(1), written from the ``referee`` argument parser: ``python -m referee.manpage [FILE]``.

The page is committed as ``referee/data/man/referee.1`` (installed as share/man/man1/referee.1);
tests/packaging/test_manpage.py fails when it no longer matches the parser. No date or version in
it: the same parser gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from referee import cli

HIDDEN = {"lab"}  # the lab runs from a checkout only; the installed command says so

FILES = (
    ("/etc/referee/policy.toml", "the transfer policy (fastagi, the process AGI, Kamailio's KEMI script)"),
    ("/etc/referee/orchestrator.toml", "the orchestrator's settings: [orchestrator] and [[pbx]] tables"),
    ("/etc/referee/fastagi.env, orchestrator.env, ingest.env", "options of the systemd units"),
    ("/var/lib/referee/audit.sqlite3", "the audit database (SQLite, the default)"),
    ("/var/lib/referee/api.token", "the operator API's token"),
    ("/var/log/referee/events.jsonl", "the proxy's JSON-lines decision events"),
)
ENVIRONMENT = (
    ("REFEREE_POLICY", "the policy file when --policy is not given"),
    ("REFEREE_AUDIT_DB", "the audit database when --db is not given"),
)


def roff(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphens escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if not path and name in HIDDEN:
                continue
            yield (*path, name), sub, helps.get(name, "")
            yield from _commands(sub, (*path, name))


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)  # not the terminal's width
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return " ".join(formatter.format_help().split())


def _options(parser: argparse.ArgumentParser) -> list[str]:
    formatter = argparse.HelpFormatter(parser.prog)
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else " " + formatter._format_args(action, action.dest.upper())
            names = ", ".join(f"\\fB{roff(o)}\\fR{roff(metavar)}" for o in action.option_strings)
        else:
            names = f"\\fI{roff(formatter._format_args(action, action.dest))}\\fR"
        lines += [".TP", names]
        if action.help:
            lines.append(roff(formatter._expand_help(action)))
    return lines


def render(parser: argparse.ArgumentParser | None = None) -> str:
    parser = parser or cli.build_parser()
    out = [
        '.TH REFEREE 1 "" "referee" "User Commands"',
        ".SH NAME",
        "referee \\- " + roff((parser.description or "").rstrip(".")),
        ".SH SYNOPSIS",
        ".B referee",
        "[\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        "One transfer policy, in one TOML file, enforced at the Kamailio proxy and again at the Asterisk",
        "PBX, with an audit record of every transfer. The commands below check policies, run the",
        "PBX-side daemons (the FastAGI transfer guard, the AMI orchestrator, the audit ingest) and read",
        "the audit trail.",
        ".SH COMMANDS",
    ]
    for path, sub, help_text in _commands(parser):
        out += [f'.SS "{roff("referee " + " ".join(path))}"', roff(_usage(sub))]
        if help_text:
            out += [".PP", roff(help_text[0].upper() + help_text[1:]) + "."]
        out += _options(sub)
    out += [".SH EXIT STATUS"]
    for line in (cli.__doc__ or "").split("Exit codes, for shell scripts:")[1].strip().splitlines():
        code, _, meaning = line.strip().partition(" ")
        out += [".TP", f"\\fB{code}\\fR", roff(meaning.strip())]
    out += [".SH ENVIRONMENT"]
    for name, meaning in ENVIRONMENT:
        out += [".TP", f"\\fB{name}\\fR", roff(meaning)]
    out += [".SH FILES"]
    for name, meaning in FILES:
        out += [".TP", f"\\fI{roff(name)}\\fR", roff(meaning)]
    out += [
        ".SH SEE ALSO",
        "\\fBkamailio\\fR(8), \\fBasterisk\\fR(8), \\fBsystemd.exec\\fR(5);",
        "the units referee\\-fastagi.service, referee\\-orchestrator.service, referee\\-ingest.service;",
        "\\fBreferee assets\\fR lists the files the package carries.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        with open(args[0], "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
