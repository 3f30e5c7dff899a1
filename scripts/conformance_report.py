"""How much of ONNX's node test suite the numba engine passes, counted as issue 14 counts.

    .venv/bin/python scripts/conformance_report.py [--junit FILE]

Runs ``tests/test_conformance.py`` (or reads a JUnit XML file of an earlier run of
it) and counts, over the node cases of the installed onnx package without the
function-expanded variants (1,404 with onnx 1.23): how many pass, in total and among
the cases in scope for a CNN runtime. Out of scope: training ops, the ML domain,
strings, sequences and optionals, control flow, RNNs, DFT and windows, attention
kernels, losses and random generators (``OUT_OF_SCOPE``, by op type). A case that
does not run (its op is not claimed, or it is excluded) counts as not passed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OUT_OF_SCOPE = {
    # training
    "Adagrad",
    "Adam",
    "Momentum",
    "Gradient",
    # losses
    "NegativeLogLikelihoodLoss",
    "SoftmaxCrossEntropyLoss",
    # strings
    "StringNormalizer",
    "StringConcat",
    "StringSplit",
    "RegexFullMatch",
    "TfIdfVectorizer",
    # sequences and optionals
    "SequenceAt",
    "SequenceConstruct",
    "SequenceEmpty",
    "SequenceErase",
    "SequenceInsert",
    "SequenceLength",
    "SequenceMap",
    "SplitToSequence",
    "ConcatFromSequence",
    "Optional",
    "OptionalGetElement",
    "OptionalHasElement",
    # control flow
    "If",
    "Loop",
    "Scan",
    # recurrent networks
    "RNN",
    "GRU",
    "LSTM",
    # signal processing
    "DFT",
    "STFT",
    "MelWeightMatrix",
    "HannWindow",
    "HammingWindow",
    "BlackmanWindow",
    # attention kernels
    "Attention",
    "RotaryEmbedding",
    "TensorScatter",
    "LinearAttention",
    "CausalConvWithState",
    # random generators
    "Bernoulli",
    "Multinomial",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    # images and text
    "ImageDecoder",
    "AffineGrid",
    "LabelEncoder",
}


def node_cases() -> dict[str, tuple[str, ...]]:
    """Test name (``test_..._cpu``) -> the op types of its model, non-expanded cases."""
    from onnx.backend.test.case.node import collect_testcases

    return {
        f"{c.name}_cpu": tuple(sorted({(n.domain or "") + n.op_type for n in c.model.graph.node}))
        for c in collect_testcases(None)
        if "_expanded" not in c.name
    }


def passed_tests(junit: Path) -> set[str]:
    names = set()
    for case in ET.parse(junit).getroot().iter("testcase"):
        if not any(child.tag in ("failure", "error", "skipped") for child in case):
            names.add(case.get("name"))
    return names


def in_scope(ops: tuple[str, ...]) -> bool:
    return not any(op in OUT_OF_SCOPE or op.startswith("ai.onnx.") for op in ops)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junit", type=Path, help="a JUnit XML file of test_conformance.py")
    args = parser.parse_args()
    junit = args.junit
    if junit is None:
        junit = Path(tempfile.mkdtemp()) / "conformance.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_conformance.py",
            "-q",
            "-p",
            "no:warnings",
            f"--junitxml={junit}",
        ]
        subprocess.run(cmd, cwd=ROOT, check=False)
    cases = node_cases()
    passed = passed_tests(junit)
    scope = {name for name, ops in cases.items() if in_scope(ops)}
    ok = {name for name in cases if name in passed}
    print(
        f"node cases (no expanded variants): {len(ok)} of {len(cases)} pass "
        f"({100 * len(ok) / len(cases):.1f}%)"
    )
    print(
        f"in scope for a CNN runtime: {len(ok & scope)} of {len(scope)} pass "
        f"({100 * len(ok & scope) / len(scope):.1f}%)"
    )
    missing = Counter(op for name in scope - ok for op in cases[name])
    print(
        "in-scope ops with cases that do not pass:",
        ", ".join(f"{op} {n}" for op, n in missing.most_common()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
