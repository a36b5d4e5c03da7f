"""ROUGE-1, ROUGE-2 and ROUGE-L F1 for summarisation, without a dependency.

As `rouge_score` scores by default (no stemming): lower-cased text split on anything
but ASCII letters and digits; ROUGE-N is the F1 of clipped n-gram overlap, ROUGE-L the
F1 of the longest common subsequence. The corpus score is the mean of the per-example
F1s, times 100 (the scale of BLEU and chrF). Plain Python: no torch.
"""

from __future__ import annotations

import re
from collections import Counter


def rouge_tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _f1(overlap: int, hyp: int, ref: int) -> float:
    if overlap == 0 or hyp == 0 or ref == 0:
        return 0.0
    precision, recall = overlap / hyp, overlap / ref
    return 2 * precision * recall / (precision + recall)


def rouge_n(hyp: list[str], ref: list[str], n: int) -> float:
    grams = [Counter(tuple(t[i:i + n]) for i in range(len(t) - n + 1)) for t in (hyp, ref)]
    overlap = sum((grams[0] & grams[1]).values())
    return _f1(overlap, sum(grams[0].values()), sum(grams[1].values()))


def lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hyp: list[str], ref: list[str]) -> float:
    return _f1(lcs_length(hyp, ref), len(hyp), len(ref))


def corpus_rouge(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """rouge1, rouge2 and rougeL: mean per-example F1 times 100 (0 for no examples)."""
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp_text, ref_text in zip(hypotheses, references, strict=True):
        hyp, ref = rouge_tokens(hyp_text), rouge_tokens(ref_text)
        sums["rouge1"] += rouge_n(hyp, ref, 1)
        sums["rouge2"] += rouge_n(hyp, ref, 2)
        sums["rougeL"] += rouge_l(hyp, ref)
    count = max(1, len(hypotheses))
    return {k: 100 * v / count for k, v in sums.items()}
