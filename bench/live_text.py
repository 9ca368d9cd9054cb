"""Words for comparing transcripts: one normalisation for the reference and every hypothesis, and WER.

The references spell numbers out ("twenty two degrees"); Whisper writes most of them as
digits ("22 degrees", "$340"). Both sides go through `normalize`, which spells digits
out the way the references say them, lower-cases, and drops punctuation, so a WER
counts misheard words, not formatting. jiwer computes the WER when it is installed
(bench/requirements.txt); a plain edit distance otherwise (the same figure).
"""

from __future__ import annotations

import re

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def spell(n: int) -> str:
    """0 <= n < 10**9 in words, the American way (no "and"): 340 -> "three hundred forty"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return f"{spell(head)} {name}" + ("" if rest == 0 else " " + spell(rest))
    raise AssertionError(n)


def _ordinal(n: int) -> str:
    words = spell(n).split()
    last = words[-1]
    if last in _ORDINALS:
        words[-1] = _ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def normalize(text: str) -> list[str]:
    """Lower-case words, digits spelled out, punctuation dropped."""
    text = text.lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,200 -> 1200
    text = re.sub(r"\$(\d+)", r"\1 dollars", text)
    text = re.sub(r"(\d+)%", r"\1 percent", text)
    text = re.sub(r"(\d+):00\b", r"\1", text)  # 11:00 -> 11
    text = re.sub(r"(\d+):(\d\d)", r"\1 \2", text)  # 9:30 -> 9 30
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: _ordinal(int(m.group(1))), text)
    text = re.sub(r"\d+", lambda m: " " + spell(int(m.group())) + " ", text)
    text = text.replace("-", " ")
    return re.findall(r"[a-z']+", text.replace("’", "'"))


def _edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference`, both normalised."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return float(bool(hyp))
    try:
        import jiwer
    except ImportError:
        return _edits(ref, hyp) / len(ref)
    return float(jiwer.wer(" ".join(ref), " ".join(hyp)))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words), so rates can be pooled over many clips."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    return _edits(ref, hyp), len(ref)


def contradicted(committed: list[str], final: list[str]) -> int:
    """How many of `committed`'s words the final does not confirm.

    Committed words are the start of the utterance: they are aligned (edit distance)
    against the final's first words only, so a committed word cannot be matched with a
    later repetition of it. Substitutions and deletions count; an insertion in the final
    contradicts nothing already shown.
    """
    if not committed:
        return 0
    head = final[: len(committed) + 2]
    # edit distance where only committed-side changes cost: align committed to a prefix of head
    inf = len(committed) + len(head) + 1
    prev = [0] * (len(head) + 1)  # committed[:0] against head[:j]: insertions in the final are free
    for i, c in enumerate(committed, 1):
        row = [i] + [inf] * len(head)
        for j, h in enumerate(head, 1):
            row[j] = min(prev[j] + 1, row[j - 1], prev[j - 1] + (c != h))
        prev = row
    return min(prev)
