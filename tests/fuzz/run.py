"""`make fuzz`: the grammar and the policy under atheris (libFuzzer, coverage-guided).

    .venv/bin/python tests/fuzz/run.py [RUNS]    # default 1,000,000 inputs

The corpus starts from seeds.SEEDS and grows in var/fuzz/corpus/ (kept between runs). A finding stops the run
with the input and the broken property (targets.Finding), and libFuzzer writes the input to var/fuzz/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

with atheris.instrument_imports(include=["referee"]):
    import seeds
    import targets

OUT = targets.REPO / "var" / "fuzz"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    corpus = OUT / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(seeds.SEEDS):
        (corpus / f"seed-{number:02d}").write_bytes(seed.encode())
    targets.example_policy()  # loaded once, outside the measured inputs
    args = [sys.argv[0], f"-runs={runs}", "-max_len=512", f"-artifact_prefix={OUT}/", "-print_final_stats=1"]
    atheris.Setup([*args, str(corpus)], targets.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
