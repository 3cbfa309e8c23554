"""Precision and recall of ``memo_pipeline.stage2.redaction.detect`` on the labelled sample.

Usage: ``python benchmarks/redaction_eval.py [--data DIR]``. The sample comes from
``benchmarks/redaction_labels.py`` (real lines from shared/data, selected and labelled by rules
and hand-checked offsets, plus fictional examples); without shared/data only the synthetic part
runs.

Scoring is span-level with **overlap matching**: a predicted span of category C is a true positive
when it overlaps a not-yet-matched expected span of category C in the same unit (one-to-one).
``exact`` is the share of expected spans found with identical boundaries. ``masked`` is the share
of expected spans overlapped by a prediction of *any* category, i.e. what would not leak under
``mask``. A unit only counts for the categories it is exhaustively labelled for.

Also printed: phone leniency (VALID vs POSSIBLE) and default region (per source vs always US),
throughput of ``redact(..., "mask")`` on memory-like sentences, the sensitive-category lexicon on
a fictional sample, and the ``strict`` drop rate on LoCoMo's generated observations. The last line
is ``redaction_eval examples=<n> ...`` with the headline numbers. Nothing from the data is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import phonenumbers

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redaction_labels as labels  # noqa: E402

from memo_pipeline.stage2 import redaction  # noqa: E402

CATEGORIES = ("email", "phone", "payment_card", "national_id", "ip_address")
Detector = Callable[[str, str], list[redaction.Finding]]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(
    units: Iterable[labels.LabelledUnit], detector: Detector, region: str | None = None
) -> dict[str, Counter[str]]:
    """Count tp/fp/fn/exact/masked per category (and per ``source/category``).

    Args:
        units: Labelled units.
        detector: ``detect``-like callable ``(text, region) -> findings``.
        region: Force this phone region instead of each unit's own.

    Returns:
        ``{key: Counter}`` with keys ``"<category>"`` and ``"<source>/<category>"``.
    """
    out: dict[str, Counter[str]] = {}
    for unit in units:
        found = detector(unit.text, region or unit.region)
        for category in CATEGORIES:
            if category not in unit.exhaustive:
                continue
            expected = [(s, e) for c, s, e in unit.spans if c == category]
            predicted = [(f.start, f.end) for f in found if f.category == category]
            matched: set[int] = set()
            tp = 0
            for p in predicted:
                hit = next(
                    (i for i, x in enumerate(expected) if i not in matched and _overlaps(p, x)),
                    None,
                )
                if hit is not None:
                    matched.add(hit)
                    tp += 1
            exact = sum(1 for x in expected if x in predicted)
            masked = sum(1 for x in expected if any(_overlaps(x, (f.start, f.end)) for f in found))
            for key in (category, f"{unit.source}/{category}"):
                c = out.setdefault(key, Counter())
                c["units"] += 1
                c["expected"] += len(expected)
                c["predicted"] += len(predicted)
                c["tp"] += tp
                c["fp"] += len(predicted) - tp
                c["fn"] += len(expected) - len(matched)
                c["exact"] += exact
                c["masked"] += masked
    return out


def _ratio(num: int, den: int) -> str:
    return f"{num / den:.3f}" if den else "  n/a"


def _row(name: str, c: Counter[str]) -> str:
    p = _ratio(c["tp"], c["tp"] + c["fp"])
    r = _ratio(c["tp"], c["tp"] + c["fn"])
    return (
        f"| {name:<24} | {c['units']:>5} | {c['expected']:>5} | {c['predicted']:>5} | "
        f"{c['tp']:>4} | {c['fp']:>4} | {c['fn']:>4} | {p:>5} | {r:>5} | "
        f"{_ratio(c['exact'], c['expected']):>5} | {_ratio(c['masked'], c['expected']):>6} |"
    )


def print_table(title: str, result: dict[str, Counter[str]], keys: list[str]) -> None:
    """Print a Markdown table of the given result keys."""
    print(f"\n{title}\n")
    print(
        "| category                 | units | spans |  pred |   tp |   fp |   fn |  prec |"
        "   rec | exact | masked |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        if k in result:
            print(_row(k, result[k]))


def _with_leniency(leniency: phonenumbers.Leniency) -> Detector:
    def run(text: str, region: str) -> list[redaction.Finding]:
        saved = redaction._PHONE_LENIENCY
        redaction._PHONE_LENIENCY = leniency
        try:
            return redaction.detect(text, region)
        finally:
            redaction._PHONE_LENIENCY = saved

    return run


def memory_sentences() -> list[str]:
    """Fictional memory-like sentences: mostly plain facts, some with contact details."""
    plain = [
        "Dana Whitfield is the head of finance at Acme Corp.",
        "Omar prefers morning meetings and dislikes long email threads.",
        "Siobhan moved from Dublin to Galway in 2021 to lead the new office.",
        "The Q3 budget review was postponed to 14 October.",
        "Marco recommended Beta Systems as a vendor for the data platform.",
        "Lena's team shipped version 2.3 of the mobile app last week.",
        "Acme signed a three-year contract worth $1.2 million with Gamma Ltd.",
        "Priya reports to the chief operating officer.",
    ]
    contact = [
        "Dana can be reached at dana.whitfield@example.com or (212) 555-0142.",
        "Omar's mobile number is +353 87 555 0199.",
        "The staging server moved to 192.0.2.44 on Monday.",
    ]
    return (plain * 4 + contact) * 20


def throughput(texts: list[str], repeat: int = 3) -> float:
    """Best-of-``repeat`` texts per second for ``redact(text, "mask")``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            redaction.redact(t, "mask")
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def locomo_observations(root: Path | None) -> list[str]:
    """LoCoMo's generated per-speaker observations (fictional personas), if present."""
    if root is None:
        return []
    path = root / "locomo" / "locomo10_shared_8conv.json"
    if not path.exists():
        return []
    facts: list[str] = []
    for conv in json.loads(path.read_text(encoding="utf-8")):
        for session in conv.get("observation", {}).values():
            for items in session.values():
                facts.extend(fact for fact, _ in items if isinstance(fact, str))
    return facts


def sensitive_eval() -> tuple[Counter[str], list[str]]:
    """Text-level confusion of ``sensitive_categories`` on ``SENSITIVE_SAMPLE`` (drop vs keep)."""
    c: Counter[str] = Counter()
    per_cat: list[str] = []
    for text, expected in labels.SENSITIVE_SAMPLE:
        got = redaction.sensitive_categories(text)
        should_drop, dropped = bool(expected), bool(got)
        c[
            "tp" if should_drop and dropped else "fn" if should_drop else "fp" if dropped else "tn"
        ] += 1
        for cat in set(expected) | set(got):
            outcome = "tp" if cat in expected and cat in got else "fn" if cat in expected else "fp"
            per_cat.append(f"{cat}:{outcome}")
    return c, per_cat


def main() -> None:
    """Run the evaluation and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="shared/data directory")
    args = parser.parse_args()
    root = args.data or labels.default_data_root()
    real = labels.real_units(root) if root else []
    synth = labels.synthetic_units()
    units = [*real, *synth]
    detect: Detector = redaction.detect

    result = score(units, detect)
    n_spans = sum(len(u.spans) for u in units)
    print(
        f"labelled sample: {len(units)} units ({len(real)} real, {len(synth)} synthetic), "
        f"{n_spans} expected spans ({sum(len(u.spans) for u in real)} real); "
        "overlap matching, phone region per source (IE for spamassassin, US otherwise)"
    )
    print_table("Per category (all units)", result, list(CATEGORIES))
    sources = sorted({u.source for u in units})
    keys = [f"{s}/{c}" for s in sources for c in CATEGORIES]
    keys = [k for k in keys if k in result and (result[k]["expected"] or result[k]["predicted"])]
    print_table("Per source (rows with a label or a prediction)", result, keys)

    print("\nPhone leniency and default region (phone category only)\n")
    print("| leniency | region | prec | rec | fp | fn |")
    print("|---|---|---:|---:|---:|---:|")
    for name, len_ in (
        ("VALID", phonenumbers.Leniency.VALID),
        ("POSSIBLE", phonenumbers.Leniency.POSSIBLE),
    ):
        for region_name, region in (("per source", None), ("US", "US")):
            c = score(units, _with_leniency(len_), region)["phone"]
            print(
                f"| {name} | {region_name} | {_ratio(c['tp'], c['tp'] + c['fp'])} | "
                f"{_ratio(c['tp'], c['tp'] + c['fn'])} | {c['fp']} | {c['fn']} |"
            )

    sc, per_cat = sensitive_eval()
    cat_counts = Counter(per_cat)
    print(
        f"\nSensitive lexicon on {len(labels.SENSITIVE_SAMPLE)} fictional sentences (text-level "
        f"drop decision): tp={sc['tp']} fn={sc['fn']} fp={sc['fp']} tn={sc['tn']}; "
        + ", ".join(f"{k}={v}" for k, v in sorted(cat_counts.items()) if not k.endswith(":tp"))
    )
    facts = locomo_observations(root)
    if facts:
        dropped = Counter(c for f in facts for c in redaction.sensitive_categories(f)[:1])
        n_drop = sum(dropped.values())
        print(
            f"strict on LoCoMo observations: dropped {n_drop}/{len(facts)} "
            f"({n_drop / len(facts):.1%}); first category: "
            + ", ".join(f"{k}={v}" for k, v in dropped.most_common())
        )

    sentences = memory_sentences()
    tps = throughput(sentences)
    print(
        f"\nthroughput: redact(mask) on {len(sentences)} memory-like sentences: {tps:,.0f} texts/s"
    )
    if facts:
        tps_locomo = throughput(facts, repeat=1)
        print(
            f"throughput: redact(mask) on {len(facts)} LoCoMo observations: "
            f"{tps_locomo:,.0f} texts/s"
        )

    parts = [f"redaction_eval examples={len(units)}", f"spans={n_spans}"]
    for cat in CATEGORIES:
        c = result.get(cat, Counter())
        parts.append(f"{cat}_p={_ratio(c['tp'], c['tp'] + c['fp'])}")
        parts.append(f"{cat}_r={_ratio(c['tp'], c['tp'] + c['fn'])}")
    parts.append(f"mask_texts_per_s={tps:.0f}")
    print("\n" + " ".join(parts))


if __name__ == "__main__":
    main()
