"""Operator "perturb_steps": a completely flawed trace with the shape of the original (every step wrong).

Math-like tasks (GSM8K, MATH, Countdown):
- result slots, in text order: the claimed result of each arithmetic step found by sot.steps (GSM8K
  `<<a*b=c>>` annotations, `a op b = c` chains, Countdown `Step k:` lines, LaTeX equations) and each bare
  number after `=` (`a = -3`). Each gets a wrong value: a random non-zero shift of up to max(3, 25 %) in
  units of the literal's last decimal place, same format (commas, decimals, %), never zero, never making
  its step valid. Every later number equal to the old value gets the new one (the error propagates),
  unless that value also occurs in the question (later occurrences may then be the given number);
- a trace with no slot at all (prose: "half of 48, which is 24 clips") has each derived number (one
  whose value is not in the question) mapped to a wrong value, everywhere it occurs;
- the final answer (last \\boxed{}, "The final answer is", "####", "The answer is", GSM8K's last number)
  is shifted too if it is still the original; Countdown's <answer> expression gets one operator flipped
  (+ <-> -, * <-> /; one that changes its value); an answer without numbers gets its choice letter
  (A)-(E), odd/even, yes/no, true/false, weekday or month changed, \\infty replaced by a digit, or a
  symbolic answer (\\pi, x) a digit factor (2\\pi); other text answers make the operator give up (None).
MBPP: the last fenced code block (else the whole trace) is mutated at about half of its sites, at least
one: comparison flips (< >=, > <=, == !=), + <-> -, += <-> -=, // -> /, True <-> False, min <-> max,
and <-> or, any <-> all, upper <-> lower, range(...) bound +-1, integer literal +1, `return x` / `if x` /
`elif x` -> `... not x` (a negated line keeps its other sites, so no double negation); formatting kept.
The operator does not grade: sot.corrupt grades every output and retries or reports it.
"""
from __future__ import annotations

import io
import random
import re
import tokenize
from decimal import Decimal
from fractions import Fraction
from typing import Callable

from sot.steps import NUMBER_PATTERN as _NUM, decimals, evaluate, find_steps, parse_number, scan, to_python
from sot.steps import tokenize as arithmetic_tokens

_ANSWER_WORDS = {"odd": "even", "even": "odd", "neither": "odd", "yes": "no", "no": "yes", "true": "false",
                 "false": "true"}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_NUMBER = re.compile(rf"(?<![\d.,])(?:{_NUM})(?:\s?\\?%)?")


def _format_like(value: Fraction, literal: str) -> str:
    core = re.match(rf"{_NUM}", literal).group()
    places = decimals(core)
    text = format(Decimal(value.numerator) / Decimal(value.denominator), f",.{places}f" if "," in core
                  else f".{places}f")
    if core.startswith(".") and text.startswith("0."):
        text = text[1:]
    return text + literal[len(core):]


def wrong_number(value: Fraction, places: int, rng: random.Random) -> Fraction:
    """A different positive value with the same number of decimals, shifted by up to max(3, 25 %)."""
    unit = Fraction(1, 10 ** places)
    scale = max(3, int(abs(value) / unit / 4))
    d = rng.randint(1, scale) * unit
    return value - d if value - d > 0 and rng.random() < 0.5 else value + d


def _propagate(rest: str, old: Fraction, new_literal_of: Callable[[str], str]) -> str:
    def swap(m):
        if rest[max(0, m.start() - 5):m.start()].lower() == "step ":
            return m.group()
        return new_literal_of(m.group()) if parse_number(m.group(), False) == old else m.group()
    return _NUMBER.sub(swap, rest)


def _perturb_slot(text: str, start: int, end: int, task_name: str, rng: random.Random,
                  givens: set) -> tuple[str, int]:
    literal = text[start:end]
    old = parse_number(literal, False)
    for attempt in range(20):  # after 10 draws that leave the step valid (\\frac{1}{1}), stop propagating
        new = wrong_number(old, decimals(literal), rng)
        new_literal = _format_like(new, literal)
        keep = old in givens or attempt >= 10
        rest = text[end:] if keep else _propagate(text[end:], old, lambda lit: _format_like(new, lit))
        out = text[:start] + new_literal + rest
        same = [s for s in find_steps(out, task_name) if s.result_start == start]
        if not same or not same[0].valid:
            break
    return out, start + len(new_literal)


def answer_span(text: str, task_name: str) -> tuple[int, int] | None:
    """Span of the final answer by the grading contract's order (Countdown: the last <answer>)."""
    if task_name == "countdown":
        ms = list(re.finditer(r"<answer>(.*?)</answer>", text, re.S))
        return ms[-1].span(1) if ms else None
    i = text.rfind("\\boxed{")
    if i >= 0:
        depth, j = 0, i + len("\\boxed")
        for k in range(j, len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                return j + 1, k
    for pattern in (r"The final answer is[:\s]*([^\n]+)", r"####[ \t]*([^\n]*)", r"(?i:the answer is)[:\s]*([^\n]+)"):
        ms = list(re.finditer(pattern, text))
        if ms:
            return ms[-1].span(1)
    ms = list(_NUMBER.finditer(text)) if task_name == "gsm8k" else []
    return ms[-1].span() if ms else None


def _value(expression: str) -> Fraction | None:
    return evaluate(to_python(arithmetic_tokens(expression)))


def _corrupt_answer(text: str, span: tuple[int, int], task_name: str, rng: random.Random) -> str | None:
    a, b = span
    body = text[a:b]
    edit = lambda i, j, new: text[:a] + body[:i] + new + body[j:] + text[b:]  # noqa: E731
    if task_name == "countdown":  # flip one operator, choosing one that changes the value
        ops = list(re.finditer(r"[-+*/]", body))
        rng.shuffle(ops)
        before = _value(body)
        for m in ops:
            flipped = body[:m.start()] + {"+": "-", "-": "+", "*": "/", "/": "*"}[m.group()] + body[m.end():]
            if _value(flipped) != before:
                return edit(m.start(), m.end(), flipped[m.start():m.end()])
    if _NUMBER.search(body):
        new_body = _NUMBER.sub(lambda m: _format_like(wrong_number(parse_number(m.group(), False),
                                                                   decimals(m.group()), rng), m.group()), body)
        return edit(0, len(body), new_body)
    choice = re.fullmatch(r"\s*(?:\\text(?:bf)?\{)?\s*\(?([A-E])\)?\s*\}?\s*", body)
    if choice:
        return edit(choice.start(1), choice.end(1), rng.choice([c for c in "ABCDE" if c != choice.group(1)]))
    word = re.search(r"\\infty|\b(?:odd|even|neither|yes|no|true|false)\b", body, re.I)
    if word:
        return edit(word.start(), word.end(), _ANSWER_WORDS.get(word.group().lower(), str(rng.randint(1, 9))))
    for cycle in (_WEEKDAYS, _MONTHS):
        name = re.search(r"\b(" + "|".join(cycle) + r")\b", body)
        if name:
            shifted = cycle[(cycle.index(name.group()) + rng.randint(1, len(cycle) - 1)) % len(cycle)]
            return edit(name.start(), name.end(), shifted)
    if body.strip() and "\\text" not in body:  # a symbolic answer (\\pi, x): scale it
        return edit(0, 0, str(rng.randint(2, 9)))
    return None


def _perturb_prose(text: str, givens: set, rng: random.Random) -> str:
    """Map each derived number (value not in the question) to one wrong value, everywhere it occurs."""
    wrong = {}

    def swap(m):
        if text[max(0, m.start() - 5):m.start()].lower() == "step ":
            return m.group()
        old = parse_number(m.group(), False)
        if old in givens:
            return m.group()
        if old not in wrong:
            wrong[old] = wrong_number(old, decimals(m.group()), rng)
        return _format_like(wrong[old], m.group())
    return _NUMBER.sub(swap, text)


def _perturb_text(task_name: str, trace: str, rng: random.Random, question: str = "") -> str | None:
    givens = {parse_number(m.group(), False) for m in _NUMBER.finditer(question)}
    span0 = answer_span(trace, task_name)
    answer0 = trace[span0[0]:span0[1]] if span0 else None
    text, pos = trace, 0
    while True:
        steps, loose = scan(text, task_name)
        slots = sorted({(s.result_start, s.result_end) for s in steps} | set(loose))
        if not slots and pos == 0:
            text = _perturb_prose(text, givens, rng)
            break
        nxt = next((s for s in slots if s[0] >= pos), None)
        if nxt is None:
            break
        text, pos = _perturb_slot(text, nxt[0], nxt[1], task_name, rng, givens)
    span = answer_span(text, task_name)
    if span is None:
        return None
    if task_name == "countdown" or text[span[0]:span[1]] == answer0:
        text = _corrupt_answer(text, span, task_name, rng)
    return text if text is not None and text != trace else None


_FLIPS = {"<": ">=", ">": "<=", "<=": ">", ">=": "<", "==": "!=", "!=": "==", "+": "-", "-": "+", "+=": "-=",
          "-=": "+=", "//": "/", "True": "False", "False": "True", "min": "max", "max": "min", "and": "or",
          "or": "and", "any": "all", "all": "any", "upper": "lower", "lower": "upper"}


def _code_region(trace: str) -> tuple[int, int]:
    blocks = list(re.finditer(r"```[A-Za-z0-9_+-]*[ \t]*\r?\n(.*?)```", trace, re.S))
    return blocks[-1].span(1) if blocks else (0, len(trace))


def mutate_program(code: str, rng: random.Random) -> str | None:
    """`code` with about half of its mutation sites changed (at least one), or None if it has none."""
    lines = re.findall(r"[^\n]*\n|[^\n]+\Z", code)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    try:
        toks = list(tokenize.generate_tokens(iter(lines).__next__ if lines else io.StringIO("").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError, StopIteration):
        return None
    pos = lambda rc: offsets[rc[0] - 1] + rc[1]  # noqa: E731
    sites, line = [], 0  # (logical line, start, end, replacement)
    for k, t in enumerate(toks):
        line += t.type == tokenize.NEWLINE
        if t.string in _FLIPS and t.type in (tokenize.OP, tokenize.NAME):
            sites.append((line, pos(t.start), pos(t.end), _FLIPS[t.string]))
        elif t.type == tokenize.NUMBER and t.string.isdigit():
            sites.append((line, pos(t.start), pos(t.end), str(int(t.string) + 1)))
        elif t.string in ("return", "if", "elif") and k + 1 < len(toks) \
                and toks[k + 1].type != tokenize.NEWLINE and toks[k + 1].string not in (";", ":", ")"):
            sites.append((line, pos(toks[k + 1].start), pos(toks[k + 1].start), "not "))
        elif t.string == "range" and k + 1 < len(toks) and toks[k + 1].string == "(":
            depth = 0
            for u in toks[k + 1:]:
                depth += {"(": 1, ")": -1}.get(u.string, 0)
                if depth == 0:
                    sites.append((line, pos(u.start), pos(u.start), rng.choice([" + 1", " - 1"])))
                    break
    if not sites:
        return None
    chosen = [s for s in sites if rng.random() < 0.5] or [rng.choice(sites)]
    negated = {s[0] for s in chosen if s[3] == "not "}  # a negated line keeps its other sites (no double flip)
    chosen = [s for s in chosen if s[0] not in negated or s[3] == "not "]
    out = code
    for _, a, b, rep in sorted(set(chosen), key=lambda s: s[1], reverse=True):
        out = out[:a] + rep + out[b:]
    return out


def perturb_steps(problem, trace: str, rng: random.Random) -> str | None:
    """A completely flawed version of `trace` with the same shape (see the module docstring), or None."""
    if problem.task == "mbpp":
        a, b = _code_region(trace)
        code = mutate_program(trace[a:b], rng)
        return None if code is None else trace[:a] + code + trace[b:]
    return _perturb_text(problem.task, trace, rng, problem.question)
