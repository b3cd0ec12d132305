"""A short run of the fuzz targets in `make test`; `make fuzz` runs them coverage-guided for a million inputs."""

from __future__ import annotations

import pytest
import seeds
import targets

from referee.sip import SipSyntaxError

INPUTS = seeds.inputs(6000)


@pytest.mark.parametrize("chunk", range(6))
def test_the_grammar_and_the_policy_hold_on_mutated_refer_to_values(chunk: int) -> None:
    for text in INPUTS[chunk * 1000 : (chunk + 1) * 1000]:
        targets.one_input(text.encode("utf-8", errors="surrogatepass"))


def test_a_parser_whose_output_does_not_parse_again_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(text: str) -> object:
        if text == "x":
            return "formatted"
        raise SipSyntaxError("refused")

    monkeypatch.setattr(targets, "PARSERS", (parse,))
    with pytest.raises(targets.Finding, match="refused"):
        targets.grammar("x")


def test_a_parser_that_raises_anything_else_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(text: str) -> object:
        raise IndexError(text)

    monkeypatch.setattr(targets, "PARSERS", (parse,))
    with pytest.raises(targets.Finding, match="IndexError"):
        targets.grammar("x")


def test_the_mutations_reach_both_allowed_and_refused_decisions() -> None:
    policy = targets.example_policy()
    allowed = sum(
        policy.decide(t, referrer=targets.REFERRER, dialogs=targets.DIALOGS).allowed for t in INPUTS
    )
    assert 100 < allowed < len(INPUTS) - 1000, allowed
