"""REFER throughput of the real Kamailio: referee against a pass-through, as ratios.

SIPp sends out-of-dialog REFERs from phone 1002 (challenged, then with credentials) to the proxy,
which relays them to a SIPp PBX stand-in that answers 202 (addresses, allocator, children:
tests/bench/proxy_configs.py). Three pairs, all runs alternating (each figure min / median / max):

- ``pass-through KEMI`` (tests/bench/passthrough_kemi.py: relays, decides nothing) against
  ``referee KEMI``, referee's full proxy: the same kamailio.cfg, only the KEMI script differs;
- ``pass-through native`` (proxy_configs.native_passthrough: the native routing with REFERs relayed
  natively) against ``referee native``, referee's full proxy as the lab runs it;
- ``stock`` (Debian's kamailio.cfg, WITH_AUTH) against ``stock+referee`` (its existing-mode drop-in):
  what the REFER check adds to an operator's own native cfg.

``--before DIR`` adds both referee configurations again, running from another source tree (e.g.
``git archive`` of an earlier commit), to measure a change of the REFER path before/after.

    make bench-proxy      # or: .venv/bin/python tests/bench/proxy_refer_ratio.py [REFERS] [RUNS] [--before DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
import proxy_configs as pc  # noqa: E402
import sippgen  # noqa: E402
from proxy_runs import Run, alternate, report  # noqa: E402

CALL_LIMIT = 50  # REFERs in flight: enough to keep the proxy busy, few enough for no UDP loss
RATE = 20000  # offered REFERs per second: more than the proxy can take
PASS, KEMI, STOCK, NATIVE = "pass-through KEMI", "referee KEMI", "stock", "stock+referee"
PASS_NATIVE, REFEREE_NATIVE = "pass-through native", "referee native"


def proxy_for(config: str, tmp: Path, before: Path | None) -> harness.Kamailio:
    checkout = before if config.endswith("(before)") and before is not None else harness.REPO
    if config == PASS:
        return pc.kemi(tmp, script=HERE / "passthrough_kemi.py")
    if config == PASS_NATIVE:
        return pc.native_passthrough(tmp)
    if config == REFEREE_NATIVE:
        return pc.kemi(tmp, routing="native")
    if config.startswith(KEMI):
        return pc.kemi(tmp, checkout=checkout)
    return pc.stock(tmp, referee=config.startswith(NATIVE), checkout=checkout)


def run_once(root: Path, config: str, index: int, refers: int, before: Path | None) -> Run:
    tmp = root / f"{config.replace(' ', '_')}-{index}"
    tmp.mkdir(parents=True)
    return pc.drive(
        tmp,
        proxy_for(config, tmp, before),
        pbx_body=sippgen.uas_refer(),
        phone_body=sippgen.ood_refer("<sip:1003@lab.test>", 202),
        items=refers,
        in_flight=CALL_LIMIT,
        rate=RATE,
        register=config.startswith(STOCK),  # the stock cfg relays the REFER to where 1001 registered
        label=f"{config:<24} run {index + 1}, REFERs",
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("refers", nargs="?", type=int, default=5000)
    parser.add_argument("runs", nargs="?", type=int, default=5)
    parser.add_argument("--before", type=Path, help="another source tree of referee, run as well")
    args = parser.parse_args(argv[1:])
    kemi = [PASS, KEMI] + ([f"{KEMI} (before)"] if args.before else [])
    native = [STOCK, NATIVE] + ([f"{NATIVE} (before)"] if args.before else [])
    routed = [PASS_NATIVE, REFEREE_NATIVE]
    with pc.exclusive(), tempfile.TemporaryDirectory(prefix="referee-bench-") as tmpdir:
        results = alternate(
            kemi + routed + native,
            args.runs,
            lambda config, i: run_once(Path(tmpdir), config, i, args.refers, args.before),
        )
    print(
        f"REFER only: {args.refers} REFERs per run ({CALL_LIMIT} in flight), {args.runs} runs per configuration"
    )
    print("\n".join(report({name: results[name] for name in kemi}, PASS, "REFER")))
    print("\n".join(report({name: results[name] for name in routed}, PASS_NATIVE, "REFER")))
    print("\n".join(report({name: results[name] for name in native}, STOCK, "REFER")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
