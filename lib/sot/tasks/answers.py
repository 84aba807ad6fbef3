"""Final-answer extraction and mathematical equivalence for GSM8K and MATH (DESIGN.md grading contract).

Extraction order: the last balanced `\\boxed{...}`, else the Minerva form "The final answer is ...",
else "#### ...", else "The answer is ..."; GSM8K alone may fall back to the last number in the text.
Equivalence: a conservative string normalisation, then exact decimal comparison, then math-verify
(`parse` + `verify`) with its signal-based timeouts; the parsed gold is cached per answer string.
"""
from __future__ import annotations

import re
import threading
from fractions import Fraction
from functools import lru_cache

# An extracted answer longer than this is treated as no answer: no real GSM8K/MATH answer comes close,
# and sympy work on huge inputs is what could hang grading.
MAX_ANSWER_CHARS = 1000
# math-verify timeouts, in whole seconds (it uses signal.alarm, which only works in the main thread).
PARSE_TIMEOUT_S = 3
VERIFY_TIMEOUT_S = 3

# Minerva's form is "Final Answer: The final answer is X. I hope it is correct." Capital T only: a
# mid-sentence "the final answer is 15 gallons * 8 ..." (GSM8K train 7157) is not a final answer line.
_MINERVA = re.compile(r"The final answer is[:\s]*(.+?)(?:\.?\s*I hope it is correct|\n|$)", re.DOTALL)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"the answer is[:\s]*([^\n]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def last_boxed(text: str, max_tries: int = 20) -> str | None:
    """Content of the last `\\boxed{...}` (balanced braces) or `\\boxed x`; None if there is none.

    An unbalanced one, or one whose content is longer than MAX_ANSWER_CHARS, is skipped for the one
    before it (at most `max_tries` are looked at, so adversarial text cannot make this slow).
    """
    start = text.rfind("\\boxed")
    for _ in range(max_tries):
        if start == -1:
            break
        i = start + len("\\boxed")
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, min(len(text), i + MAX_ANSWER_CHARS + 2)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j].strip()
        elif i > start + len("\\boxed"):  # "\boxed 2$." form: one token after a space
            m = re.match(r"[^\s$]+", text[i:])
            if m:
                return m.group(0).rstrip(".")
        start = text.rfind("\\boxed", 0, start)  # unbalanced: try the previous one
    return None


def _clean_span(span: str) -> str:
    span = span.strip()
    for _ in range(2):
        span = span.strip().rstrip(".").strip()
        if len(span) >= 2 and span[0] == "$" and span[-1] == "$":
            span = span.strip("$")
        if span.startswith("\\(") and span.endswith("\\)"):
            span = span[2:-2]
    return span.strip()


def extract_answer(text: str, last_number_fallback: bool = False) -> str | None:
    """The final answer in `text` by the contract's order; None when no answer is found."""
    if not text:
        return None
    candidates = [last_boxed(text)]
    for pattern in (_MINERVA, _HASHES, _ANSWER_IS):
        matches = pattern.findall(text)
        candidates.append(_clean_span(matches[-1]) if matches else None)
    for span in candidates:
        if span:
            return span if len(span) <= MAX_ANSWER_CHARS else None
    if last_number_fallback:
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1].rstrip(",")
    return None


def first_number(span: str) -> str | None:
    """The first number in a plain-text span ("$1,000 dollars" -> "1,000"), or None."""
    m = _NUMBER.search(span.replace("\\$", "").replace("$", ""))
    return m.group(0).rstrip(",") if m else None


def normalize(answer: str) -> str:
    """Conservative normalisation: two answers equal after it are certainly equivalent."""
    s = answer.strip()
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", ""),
                     ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\$", ""), ("$", "")):
        s = s.replace(old, new)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


def as_fraction(answer: str) -> Fraction | None:
    """An exact value for a plain decimal number ("1,000", "-2.50", ".5"); None for anything else."""
    s = normalize(answer)
    if not _PLAIN_NUMBER.fullmatch(s):
        return None
    return Fraction(s.replace(",", ""))


def _timeouts() -> tuple[int | None, int | None]:
    # math-verify's timeouts use signal.alarm: outside the main thread they must be off.
    if threading.current_thread() is threading.main_thread():
        return PARSE_TIMEOUT_S, VERIFY_TIMEOUT_S
    return None, None


def _mv_parse(answer: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    parse_timeout, _ = _timeouts()
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse("\\boxed{" + answer + "}", extraction_config=config,
                 parsing_timeout=parse_timeout, raise_on_error=False)


@lru_cache(maxsize=65536)
def parse_gold(answer: str):
    """math-verify parse of a gold answer, cached (each gold is parsed once per process)."""
    return _mv_parse(answer)


def equivalent(gold: str, pred: str | None) -> bool:
    """True when `pred` is mathematically equal to `gold` (string, exact decimal, then math-verify)."""
    if pred is None or not pred.strip() or len(pred) > MAX_ANSWER_CHARS:
        return False
    if normalize(gold) == normalize(pred):
        return True
    g, p = as_fraction(gold), as_fraction(pred)
    if g is not None and p is not None:
        return g == p
    from math_verify import verify

    gold_parsed = parse_gold(gold)
    pred_parsed = _mv_parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    _, verify_timeout = _timeouts()
    try:
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=verify_timeout, raise_on_error=False))
    except Exception:  # math-verify raises only on misuse; a failed comparison is a wrong answer
        return False
