"""Call mix through the real Kamailio: what putting referee in front of a PBX costs on real traffic.

SIPp phone 1002 calls 1001 through the proxy: INVITE (challenged), 180, 200, ACK, BYE, with a REGISTER
refresh every fifth call and an in-dialog REFER (202, NOTIFY 200) every tenth
(tests/bench/call_mix_sipp.py). A SIPp PBX stand-in answers, registered as 1001. Five configurations
of the host's Kamailio (tests/bench/proxy_configs.py: addresses, allocator, children):

- A ``stock``: Debian's shipped kamailio.cfg (tests/integration/stock/kamailio-5.6.cfg) with WITH_AUTH
  and an SQLite subscriber table, no referee;
- B ``stock+referee``: the same cfg with referee's existing-mode drop-in (Python only for the REFER,
  its reply and its NOTIFY; the REFER is authenticated by route[REFEREE]);
- C ``referee native``: referee's full proxy (the kamailio role's kamailio.cfg.j2) as the lab runs it,
  native routing: Python only for the REFER, its NOTIFY and the dialog map's changes (an INVITE, its
  first answer with a To tag, its BYE);
- D ``referee KEMI``: the same proxy with ``kamailio__routing: kemi``, every request in Python;
- E ``referee native, in memory``: C with ``kamailio__state_dir: ""``: registrations and the dialog map
  in memory only, as A keeps its dialogs (none) and near how it keeps registrations (usrloc db_mode 2,
  written back once a minute): what C's routing costs, apart from writing every change through to SQLite.

Runs alternate A B C D E A B C D E ...; each figure is min / median / max over the runs. Not a timed test.

    make bench-proxy      # or: .venv/bin/python tests/bench/call_mix.py [CALLS] [RUNS]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import call_mix_sipp  # noqa: E402
import harness  # noqa: E402
import proxy_configs as pc  # noqa: E402
from proxy_runs import Run, alternate, report  # noqa: E402

CALL_LIMIT = 40  # calls in flight: enough to keep the proxy busy, few enough for no UDP loss
RATE = 5000  # offered calls per second: more than the proxy can take
CONFIGS = ("A stock", "B stock+referee", "C referee native", "D referee KEMI", "E referee native, in memory")


def proxy_for(config: str, tmp: Path) -> harness.Kamailio:
    if config.startswith("C"):
        return pc.kemi(tmp, routing="native")
    if config.startswith("D"):
        return pc.kemi(tmp)
    if config.startswith("E"):
        return pc.kemi(tmp, routing="native", kamailio__state_dir="")
    return pc.stock(tmp, referee=config.startswith("B"))


def run_once(root: Path, config: str, index: int, calls: int) -> Run:
    tmp = root / f"{config[0]}{index}"
    tmp.mkdir(parents=True)
    return pc.drive(
        tmp,
        proxy_for(config, tmp),
        pbx_body=call_mix_sipp.pbx(),
        phone_body=call_mix_sipp.phone(),
        items=calls,
        in_flight=CALL_LIMIT,
        rate=RATE,
        register=True,
        label=f"{config:<28} run {index + 1}, calls",
    )


def main(argv: list[str]) -> int:
    calls = int(argv[1]) if len(argv) > 1 else 2000
    runs = int(argv[2]) if len(argv) > 2 else 5
    with pc.exclusive(), tempfile.TemporaryDirectory(prefix="referee-callmix-") as tmpdir:
        results = alternate(CONFIGS, runs, lambda config, i: run_once(Path(tmpdir), config, i, calls))
    print(f"call mix: {calls} calls per run ({CALL_LIMIT} in flight), {runs} runs per configuration")
    print("\n".join(report(results, CONFIGS[0], "call")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
