"""The referee CLI: output for people, --json for scripts, exit codes to branch on."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from referee.cli import EXIT_BAD_POLICY, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, main

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "policy.toml")
BOB = "sip:1002@lab.test"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "validate", EXAMPLE)
    assert code == EXIT_OK
    assert "ok, policy 'lab': 1 tenant(s)" in out


def test_validate_names_the_bad_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(EXAMPLE).read_text().replace("max_depth = 3", "max_depth = -2"))
    code, out, err = run(capsys, "policy", "validate", str(bad))
    assert code == EXIT_BAD_POLICY
    assert "policy.max_depth: must be at least 0, got -2" in err
    assert "Traceback" not in err + out
    code, out, _ = run(capsys, "policy", "validate", "--json", str(bad))
    assert code == EXIT_BAD_POLICY
    assert json.loads(out) == {
        "valid": False,
        "file": str(bad),
        "key": "policy.max_depth",
        "problem": "must be at least 0, got -2",
    }


def test_check_rewrites_an_extension(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "check", "--policy", EXAMPLE, "--referrer", BOB, "1003@lab.test")
    # a bare 1003@lab.test has no scheme: that is a 400, not a guess
    assert code == EXIT_REJECTED and "REJECT 400" in out
    code, out, _ = run(
        capsys, "policy", "check", "--policy", EXAMPLE, "--referrer", BOB, "<sip:1003@lab.test>"
    )
    assert code == EXIT_OK
    assert "Refer-To: <sip:1003@127.0.0.20:5060>" in out


def test_check_rejects_premium_with_a_clear_reason(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "policy",
        "check",
        "--policy",
        EXAMPLE,
        "--referrer",
        BOB,
        "--explain",
        "<sip:09001234567@lab.test>",
    ]
    code, out, _ = run(capsys, *argv)
    assert code == EXIT_REJECTED
    assert out.splitlines()[0] == "REJECT 403 Transfer to +449001234567 denied: premium-rate (09)"
    assert "trace:" in out and "number" in out


def test_check_json_and_dialogs(capsys: pytest.CaptureFixture[str]) -> None:
    refer_to = "<sip:1003@lab.test?Replaces=c1%40h%3Bto-tag%3Da%3Bfrom-tag%3Db>"
    base = ["policy", "check", "--policy", EXAMPLE, "--referrer", BOB, "--json"]
    code, out, _ = run(capsys, *base, "--dialog", "c1@h;a;b", refer_to)
    assert code == EXIT_OK
    decision = json.loads(out)
    assert decision["replaces"] == {"call_id": "c1@h", "to_tag": "a", "from_tag": "b", "early_only": False}
    code, out, _ = run(capsys, *base, refer_to)
    assert code == EXIT_REJECTED and json.loads(out)["rule"] == "replaces"


def test_check_strips_maddr_and_explains_why(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["policy", "check", "--referrer", BOB, "--explain"]
    refer_to = "<sip:1003@lab.test;maddr=198.51.100.7;ttl=1>"
    code, out, _ = run(capsys, *base, "--policy", EXAMPLE, refer_to)
    assert code == EXIT_OK
    assert "Refer-To: <sip:1003@127.0.0.20:5060>\n" in out
    assert "strip    URI parameter ;maddr=198.51.100.7: maddr overrides where the request is sent" in out
    strict = tmp_path / "strict.toml"
    strict.write_text(
        Path(EXAMPLE).read_text().replace('on_uri_parameter = "strip"', 'on_uri_parameter = "reject"')
    )
    code, out, _ = run(capsys, *base, "--policy", str(strict), refer_to)
    assert code == EXIT_REJECTED
    assert out.splitlines()[0] == "REJECT 403 Refer-To URI parameter maddr not allowed"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dialog", "only-a-call-id"], "CALL-ID;TAG;TAG"),
        (["--depth", "-1"], "--depth"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    code, _, err = run(capsys, "policy", "check", "--policy", EXAMPLE, "--referrer", BOB, *extra, "<sip:1@x>")
    assert code == EXIT_USAGE
    assert message in err


def test_missing_policy_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "none.toml")
    code, _, err = run(
        capsys, "policy", "check", "--policy", missing, "--referrer", BOB, "<sip:1003@lab.test>"
    )
    assert code == EXIT_BAD_POLICY
    assert "cannot read" in err


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == EXIT_OK
    assert out == f"referee {metadata.version('referee')}\n"
