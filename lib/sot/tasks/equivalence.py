"""Comparing an extracted answer with the gold (README "Grading contract", rules 5-7; extraction: answers.py).

5. The `=` rule: where the span holds `=` (not `<=`, `>=`, `!=`, `==`), the answer is what follows the last
   `=` ("84 * 7 = 588" is 588; "x = 2 or x = 3" is "2, 3"), unless the gold itself is an equation
   ("y = 2x + 3"), which is then compared whole.
6. Equivalence (MATH, and GSM8K's LaTeX spans): equal strings after a conservative normalisation (`\\left`,
   `\\right`, LaTeX spaces `\\! \\, \\: \\;`, `{,}` as `,`, `$` and `\\$` dropped), else the canonical forms of
   both sides (LaTeX thousands separators "32,\\!348" / "32{,}348" / "32\\,348" read as 32,348; money `\\$`,
   degrees `^\\circ`/°, percent signs and trailing word units dropped, repeating decimals `0.\\overline{3}` as
   fractions, "2 or 3" / "2 and 3" as the set "2, 3") compared as strings, as exact decimals, then by
   math-verify (`parse` + `verify`, signal-based timeouts, parsed gold cached). A gold that is a multiple-choice
   letter ("(C)", "\\text{(C)}") matches a prediction naming that one choice ("C", "(C) Plane") and nothing else.
7. GSM8K: the span's first number (money `$`, thousands separators, `%` and units ignored); a hedge naming
   several different numbers ("84 or 88", "between 80 and 90", "\\boxed{84}, \\boxed{88}") is wrong.
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

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_EQ = re.compile(r"(?<![<>!=\\])=(?!=)")
_PARTS = re.compile(r",\s*|;\s*|\s+or\s+|\s+and\s+|\\text\{\s*(?:or|and)\s*\}|\\q?quad\b")
_OR_AND = re.compile(r"\s*\\text\{\s*(?:or|and)\s*\}\s*|\s+(?:or|and)\s+")
_PERCENT = re.compile(r"\\?%")
_OVERLINE = re.compile(r"(-?)(\d*)\.(\d*)\\overline\{(\d+)\}")
_UNIT = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)\s*(?:\\(?:text|mbox|mathrm)\{[^{}]*\}|[A-Za-z]{3,}\.?)"
                   r"(?:\s+[A-Za-z]{3,}\.?)*")
_CHOICE_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{|[{}$\s]")
_CHOICE = re.compile(r"\(?([A-Z])\)?")
_HEDGE = re.compile(r"\bor\b|\bbetween\b|,\s", re.IGNORECASE)
# LaTeX thousands separators between digit groups: "32,\\!348" and "32{,}348" are "32,348"; "32\\,348" is "32348".
_SEPARATOR = re.compile(r"(?<=\d)(?:\s*(,|\{,\})\s*\\!\s*|(\{,\})|\s*\\[,!:;]\s*)(?=\d{3}(?!\d))")


def plain_separators(span: str) -> str:
    """`span` with LaTeX thousands separators written plainly ("\\$32,\\!348" -> "\\$32,348")."""
    if "\\" not in span and "{" not in span:
        return span
    return _SEPARATOR.sub(lambda m: "," if m.group(1) or m.group(2) else "", span)


def first_number(span: str) -> str | None:
    """The first number in a plain-text span ("$1,000 dollars" -> "1,000"), or None."""
    m = NUMBER.search(plain_separators(span).replace("\\$", "").replace("$", ""))
    return m.group(0).rstrip(",") if m else None


def numbers_in(span: str) -> list[str]:
    """Every number in a plain-text span, thousands separators dropped ("1,000 or 2" -> ["1000", "2"])."""
    span = plain_separators(span).replace("\\$", "").replace("$", "")
    return [n.rstrip(",").replace(",", "") for n in NUMBER.findall(span)]


def after_equals(span: str, gold: str) -> str:
    """Rule 5: the part of `span` after its last `=` (each part's, for "x = 2 or x = 3"); whole if gold has `=`."""
    if _EQ.search(gold) or not _EQ.search(span):
        return span
    parts = _PARTS.split(span)
    if len(parts) > 1 and all(_EQ.search(p) for p in parts):
        return ", ".join(_rhs(p) for p in parts)
    return _rhs(span)


def _rhs(text: str) -> str:
    last = None
    for last in _EQ.finditer(text):
        pass
    rhs = text[last.end():].strip() if last else text
    return rhs or text


@lru_cache(maxsize=65536)
def normalize(answer: str) -> str:
    """Conservative normalisation: two answers equal after it are certainly equivalent (cached)."""
    s = answer
    if "\\" in s or "$" in s or "{," in s:
        for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""),
                         ("\\ ", ""), ("{,}", ","), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\$", ""),
                         ("$", "")):
            s = s.replace(old, new)
    return "".join(s.split()).rstrip(".")


def _repeating(m: re.Match) -> str:
    sign, whole, fixed, period = m.groups()
    value = Fraction(int(whole or 0)) + Fraction(int(fixed + period) - int(fixed or 0),
                                                 10 ** len(fixed) * (10 ** len(period) - 1))
    frac = f"\\frac{{{value.numerator}}}{{{value.denominator}}}" if value.denominator != 1 else str(value)
    return sign + frac


def canonical(answer: str) -> str:
    """Rule 6's canonical form: degrees, percent, repeating decimals, "or"/"and" lists, trailing word units."""
    s = plain_separators(answer).replace("°", "^\\circ").replace("\u2212", "-").replace("\\$", "").strip()
    s = _PERCENT.sub("", s)
    s = _OVERLINE.sub(_repeating, s)
    s = _OR_AND.sub(", ", s)
    unit = _UNIT.fullmatch(s)
    return unit.group(1) if unit else s


def choice_letter(answer: str, gold: bool = True) -> str | None:
    """The multiple-choice letter an answer names: "(C)", "\\text{(C)}", "C"; a prediction may add the option's
    text ("(C) Plane") but must name exactly one choice. None when it names none (or, for a gold, is no letter)."""
    s = _CHOICE_WRAPPERS.sub("", answer).rstrip(".,;")
    m = _CHOICE.fullmatch(s)
    if m:
        return m.group(1)
    if gold:
        return None
    letters = set(re.findall(r"\(([A-Z])\)", s))
    return letters.pop() if len(letters) == 1 else None


def as_fraction(answer: str) -> Fraction | None:
    """An exact value for a plain decimal number ("1,000", "-2.50", ".5"); None for anything else."""
    return _fraction(normalize(answer))


def _fraction(normalized: str) -> Fraction | None:
    if not _PLAIN_NUMBER.fullmatch(normalized):
        return None
    return Fraction(normalized.replace(",", ""))


def gsm8k_prediction(span: str) -> tuple[str, bool]:
    """Rule 7: (what to compare with the gold number, is_hedge) for a GSM8K span (after rule 5)."""
    s = plain_separators(span)
    s = _PERCENT.sub("", s).replace("\u2212", "-") if ("%" in s or "\u2212" in s) else s
    if _HEDGE.search(s) and len({Fraction(n) for n in numbers_in(s)}) > 1:
        return s, True
    if "\\" in s.replace("\\$", "") or "{" in s:
        return s, False  # LaTeX goes to math-verify as it is
    numbers = numbers_in(s)
    return (numbers[0] if numbers else s), False


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
    """True when `pred` is mathematically equal to `gold` (rule 6)."""
    if pred is None or not pred.strip() or len(pred) > MAX_ANSWER_CHARS:
        return False
    n_gold, n_pred = normalize(gold), normalize(pred)
    if n_gold == n_pred:
        return True
    g, p = _fraction(n_gold), _fraction(n_pred)
    if g is not None and p is not None:
        return g == p
    letter = choice_letter(gold)
    if letter is not None and len(gold) <= 20:
        return choice_letter(pred, gold=False) == letter
    gold, pred = canonical(gold), canonical(pred)
    n_gold, n_pred = normalize(gold), normalize(pred)
    if n_gold == n_pred:
        return True
    g, p = _fraction(n_gold), _fraction(n_pred)
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
