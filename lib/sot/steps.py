"""Arithmetic steps in a reasoning trace, each checked with exact arithmetic (beyond the paper).

What counts as a step (`find_steps(text, task)`; MBPP code has none):
- a GSM8K calculator annotation `<<48/2=24>>`; the visible copy of the same step next to it is not counted twice;
- an equation chain `e0 = e1 = ...` written with numbers and `+ - * / ^`, `x`/`×` between numbers,
  `·`, `÷`, parentheses and LaTeX (`\\frac{a}{b}`, `\\cdot`, `\\times`, `\\div`, `\\left( \\right)`, braces,
  `\\boxed{}`), e.g. `100 - 50 - 30 - 15 = $5`, Countdown `Step 2: 30 * 2 = 60`, MATH `$2^3 \\cdot 5 = 40$`.
  Every consecutive pair (e_i, e_{i+1}) with an operator on at least one side is one step. A running chain
  `5 * 3 = 15 + 2 = 17` (the next side starts with the previous result) is read as two valid steps.
  A side glued to a variable or a unit (`2a = -6`, `x - 3 = 5`, `= 2x`, `of 50 = 10`), or after a LaTeX
  command other than a separator (`3\\oplus 1 = ...`, `\\sqrt{16} = 4`; separators: \\Rightarrow, \\quad,
  \\text, ...) or after glued punctuation (`7@4 = ...`, `5! = 120`) is not plain arithmetic and is left
  out; so are sides that do not parse. In MATH, a line break inside an equation (the line ends, or the
  next one starts, with an operator or `=`) does not end it.
Numbers: `1,000`, `71,\\!592`, `1{,}000` (thousands), `2.5`, `.5`, `$12` ($ ignored), `50%` / `50\\%`,
LaTeX mixed numbers `32\\frac{1}{3}` (= 32 + 1/3).
Checking is exact (fractions.Fraction, expressions parsed with `ast`, never `eval`). Tolerances:
- a claimed result written with k >= 1 decimals is valid when it is within 10^-k of the exact value
  (so both rounding and truncation to k places pass: `10/3 = 3.33`, `2/3 = 0.67`); integers must be
  exact, unless the words around the step (40 characters before, 60 after) say it is rounded ("nearest",
  "round", "approx", "about", "roughly", "estimat"): then within 1 of the integer;
- `≈` / `\\approx` also accept a relative error up to 1 %;
- a percent sign is read both ways (50 % as 1/2 and as 50) and the step is valid if either reading holds.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

NUMBER_PATTERN = _NUM = r"\d+(?:(?:,|\{,\})(?:\\!)?\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_TOKEN = re.compile(
    rf"(?P<num>(?:{_NUM})(?:\s?\\?%)?)"
    r"|(?P<frac>\\[dt]?frac(?![A-Za-z]))"
    r"|(?P<skip>\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\boxed(?![A-Za-z])|\\[$,;!%]|\\quad|[ \t$&])"
    r"|(?P<op>\*\*|\\cdot(?![A-Za-z])|\\times(?![A-Za-z])|\\div(?![A-Za-z])|[-+*/^×÷·⋅∗−])"
    r"|(?P<eq>\\approx(?![A-Za-z])|[=≈])"
    r"|(?P<lp>[({\[])|(?P<rp>[)}\]])"
    r"|(?P<word>\\[A-Za-z]+|[A-Za-z_]+)"
    r"|(?P<other>.|\n)", re.S)
_OPS = {"×": "*", "·": "*", "⋅": "*", "∗": "*", "÷": "/", "−": "-", "^": "**", "\\cdot": "*",
        "\\times": "*", "\\div": "/"}
_ANNOTATION = re.compile(r"<<([^<>\n]*)>>")
_ROUNDING = re.compile(r"nearest|round|approx|about|roughly|estimat", re.I)
_LINE_GOES_ON = re.compile(r"[ \t]*(?:[-+=*/×·]|\\cdot|\\times)")
# LaTeX commands after which an equation starts afresh; any other command before it (\oplus, \sqrt,
# \pi, ...) means the first side is not plain arithmetic.
_SEPARATORS = {"\\Rightarrow", "\\implies", "\\iff", "\\Longrightarrow", "\\rightarrow", "\\to", "\\quad",
               "\\qquad", "\\therefore", "\\text", "\\textbf", "\\mbox", "\\displaystyle", "\\begin", "\\end"}
_OPEN_PUNCT = ("\n", ":", ",", ";", ">", "\x00")
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Tok:
    kind: str   # num | frac | op | eq | lp | rp | word | other
    text: str
    start: int
    end: int
    space_before: bool


@dataclass(frozen=True)
class Step:
    """One checked step: `lhs = rhs`; `claimed` is what the trace states, `computed` what lhs really is."""
    kind: str                   # "annotation" | "equation"
    text: str                   # the step as written
    computed: Fraction | None
    claimed: Fraction | None
    valid: bool
    start: int                  # span of the step in the trace
    end: int
    result_start: int           # span of the number holding the claimed result (what perturb_steps changes)
    result_end: int


def parse_number(literal: str, percent_as_fraction: bool = True) -> Fraction:
    """`1,000` -> 1000, `2.5` -> 5/2, `50%` -> 1/2 (or 50 with percent_as_fraction=False)."""
    core = re.sub(r"[,{}%]|\\!|\\", "", literal).strip()
    value = Fraction(core)
    return value / 100 if ("%" in literal and percent_as_fraction) else value


def decimals(literal: str) -> int:
    core = literal.replace("\\%", "").replace("%", "").strip()
    return len(core.split(".")[1]) if "." in core else 0


def tokenize(text: str, offset: int = 0, join_lines: bool = False) -> list[Tok]:
    """Tokens of `text` (spans shifted by `offset`); spaces, `$`, `\\left`/`\\right`/`\\boxed` are dropped.

    join_lines: a line break inside an equation (the line ends, or the next begins, with an operator or
    `=`) is a space, as in MATH's LaTeX."""
    toks, space = [], True
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "other" and m.group() == "\n" and join_lines and (
                (toks and toks[-1].kind in ("op", "eq")) or _LINE_GOES_ON.match(text, m.end())):
            space = True
            continue
        if kind == "skip":
            space = space or m.group() not in ("\\left", "\\right", "\\boxed")
            continue
        toks.append(Tok(kind, m.group(), m.start() + offset, m.end() + offset, space))
        space = False
    # `x` between two numbers is a multiplication sign (GSM8K `12 x 2`)
    for i in range(1, len(toks) - 1):
        t = toks[i]
        if t.kind == "word" and t.text in ("x", "X") and toks[i - 1].kind in ("num", "rp") \
                and toks[i + 1].kind in ("num", "lp", "frac") and t.space_before and toks[i + 1].space_before:
            toks[i] = Tok("op", "*", t.start, t.end, t.space_before)
    return toks


def _group_end(toks: list[Tok], i: int) -> int:
    """Index just past the bracket group opening at toks[i], or -1 if it is not closed."""
    depth = 0
    for j in range(i, len(toks)):
        depth += {"lp": 1, "rp": -1}.get(toks[j].kind, 0)
        if depth == 0:
            return j + 1
    return -1


def _frac(toks: list[Tok], i: int, percent_as_fraction: bool) -> tuple[str, int] | None:
    """Python source of the `\\frac{a}{b}` starting at toks[i], and the index after it."""
    a_end = _group_end(toks, i + 1) if i + 1 < len(toks) and toks[i + 1].text == "{" else -1
    b_end = _group_end(toks, a_end) if 0 < a_end < len(toks) and toks[a_end].text == "{" else -1
    if b_end < 0:
        return None
    num = to_python(toks[i + 2:a_end - 1], percent_as_fraction)
    den = to_python(toks[a_end + 1:b_end - 1], percent_as_fraction)
    return None if num is None or den is None else (f"(({num})/({den}))", b_end)


def to_python(toks: list[Tok], percent_as_fraction: bool = True) -> str | None:
    """Python source for an arithmetic token list (numbers as exact integer ratios), or None."""
    out, i, prev = [], 0, None
    while i < len(toks):
        t = toks[i]
        if prev in ("num", "rp") and t.kind in ("num", "lp", "frac") and not (prev == "num" and t.kind == "num"):
            out.append("*")  # implicit multiplication 2(3+4), (1)(2)
        if t.kind == "num":
            if prev == "num":
                return None
            v = parse_number(t.text, percent_as_fraction)
            number = f"({v.numerator}/{v.denominator})" if v.denominator != 1 else str(v.numerator)
            if i + 1 < len(toks) and toks[i + 1].kind == "frac":  # LaTeX mixed number 1\frac{2}{3}
                frac = _frac(toks, i + 1, percent_as_fraction)
                if frac is None:
                    return None
                out.append(f"({number}+{frac[0]})")
                i, prev = frac[1], "rp"
                continue
            out.append(number)
        elif t.kind == "op":
            out.append(_OPS.get(t.text, t.text))
        elif t.kind in ("lp", "rp"):
            out.append("(" if t.kind == "lp" else ")")
        elif t.kind == "frac":
            frac = _frac(toks, i, percent_as_fraction)
            if frac is None:
                return None
            out.append(frac[0])
            i, prev = frac[1], "rp"
            continue
        else:
            return None
        prev = t.kind
        i += 1
    return "".join(out) or None


def evaluate(source: str | None) -> Fraction | None:
    """Exact value of an arithmetic expression (ints, + - * / **, unary +/-), via `ast`; None if not one."""
    if not source:
        return None
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError):
        return None

    def walk(node) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            v = walk(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if isinstance(node.op, ast.Div):
                return a / b
            if isinstance(node.op, ast.Pow) and b.denominator == 1 and abs(b) <= _MAX_EXPONENT \
                    and max(abs(a.numerator), a.denominator) < 10 ** 12:
                return a ** int(b)
        raise ValueError("not arithmetic")

    try:
        return walk(tree.body)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


def _matches(computed: Fraction, claimed: Fraction, places: int, approx: int) -> bool:
    """approx: 0 exact (decimals: within one unit of the last place), 1 rounding said in words
    (integers too), 2 an explicit `≈` (also within 1 %)."""
    diff = abs(computed - claimed)
    if diff == 0 or ((places >= 1 or approx >= 1) and diff < Fraction(1, 10 ** places)):
        return True
    return approx == 2 and diff <= abs(claimed) / 100


def _is_word(t: Tok | None) -> bool:
    return t is not None and (t.kind == "word" or t.kind == "rp")


def _runs(toks: list[Tok]):
    """Maximal arithmetic token runs with their neighbours: (run, token before, token after)."""
    arith = ("num", "frac", "op", "eq", "lp", "rp")
    i = 0
    while i < len(toks):
        if toks[i].kind not in arith:
            i += 1
            continue
        j = i
        while j < len(toks) and toks[j].kind in arith:
            j += 1
        yield toks[i:j], (toks[i - 1] if i else None), (toks[j] if j < len(toks) else None)
        i = j


def _segments(run: list[Tok], before: Tok | None, after: Tok | None):
    """Split a run at `=`; return [(tokens, complete)] and the approx flags of each `=`."""
    run = list(run)
    # markdown emphasis around an equation: **5 + 3 = 8**
    while run and run[0].text in ("*", "**") and (before is None or before.kind != "word" or run[0].space_before):
        run.pop(0)
    while run and run[-1].text in ("*", "**") and (after is None or after.kind != "word" or after.space_before):
        run.pop()
    if len(run) > 1 and run[0].text in ("-", "*", "+", "−") and run[1].space_before \
            and (before is None or before.text == "\n"):  # a markdown bullet "- 72 - 2 = 70"
        run.pop(0)
    closed_group = False
    while run and run[0].kind == "rp":  # the end of a group opened before the run: `\\frac{x}{2} = ...`
        before, closed_group = run.pop(0), True
    segs, approx, cur = [], [], []
    for t in run:
        if t.kind == "eq":
            segs.append(cur)
            approx.append(t.text != "=")
            cur = []
        else:
            cur.append(t)
    segs.append(cur)
    complete = [bool(s) for s in segs]
    if segs[0]:
        first = segs[0][0]
        glued = before is not None and before.kind == "word" and not first.space_before
        continues = first.kind == "op" and first.text not in ("-", "−") or \
            (first.kind == "op" and _is_word(before))
        command = before is not None and before.kind == "word" and before.text.startswith("\\") \
            and before.text not in _SEPARATORS
        odd = before is not None and before.kind == "other" and not first.space_before \
            and before.text not in _OPEN_PUNCT
        if glued or continues or command or odd or closed_group or \
                (before is not None and before.text.lower() in ("of", "times")):
            complete[0] = False
    last = segs[-1]
    if last and (last[-1].kind == "op" or (after is not None and after.kind == "word" and not after.space_before)):
        complete[-1] = False
    return list(zip(segs, complete)), approx


def _has_op(seg: list[Tok]) -> bool:
    """A binary operator or a fraction (a leading sign does not count) and a number."""
    body = seg[1:] if seg and seg[0].text in ("-", "+", "−") else seg
    return any(t.kind in ("op", "frac") for t in body) and any(t.kind == "num" for t in seg)


def _single_number(seg: list[Tok]) -> Tok | None:
    core = [t for t in seg if t.kind != "lp" and t.kind != "rp"]
    if len(core) == 1 and core[0].kind == "num":
        return core[0]
    if len(core) == 2 and core[0].text in ("-", "−", "+") and core[1].kind == "num":
        return core[1]
    return None


def _check_pair(lhs, rhs, approx, text, kind) -> Step | None:
    nums = [t for t in rhs if t.kind == "num"]
    if not nums:
        return None
    single = _single_number(rhs)
    running = single is None and rhs[0].kind == "num" and len(rhs) > 1 and rhs[1].kind == "op"
    result = single or nums[0]
    best = None
    readings = (True, False) if any("%" in t.text for t in lhs + rhs) else (True,)
    for pct in readings:
        computed = evaluate(to_python(lhs, pct))
        whole = evaluate(to_python(rhs, pct))
        if computed is None or whole is None:
            continue
        places = decimals(single.text) if single is not None else 0
        if _matches(computed, whole, places, approx):
            best = (computed, whole, True)
            break
        lead = parse_number(rhs[0].text, pct) if running else None
        if running and _matches(computed, lead, decimals(rhs[0].text), approx):
            best = (computed, lead, True)
            break
        if best is None:
            best = (computed, lead if running else whole, False)
    if best is None:
        return None
    start, end = lhs[0].start, rhs[-1].end
    return Step(kind, text[start:end], best[0], best[1], best[2], start, end, result.start, result.end)


def scan(text: str, task) -> tuple[list[Step], list[tuple[int, int]]]:
    """Steps, plus the spans of loose results (`a = -3`: a number after `=` that is not a checkable step)."""
    name = getattr(task, "name", task)
    if not isinstance(name, str):
        raise TypeError(f"task must be a task name or a sot.tasks task, got {type(task).__name__}")
    if name == "mbpp":
        return [], []
    steps, loose = [], []
    pieces = [("annotation", m.group(1), m.start(1)) for m in _ANNOTATION.finditer(text)]
    masked = _ANNOTATION.sub(lambda m: "\x00" * len(m.group()), text)
    pieces.append(("equation", masked, 0))
    for kind, chunk, offset in pieces:
        toks = tokenize(chunk, offset, join_lines=name == "math")
        for run, before, after in _runs(toks):
            if kind == "annotation":
                before = after = None
            segs, approx = _segments(run, before, after)
            for k in range(len(segs) - 1):
                (lhs, ok_l), (rhs, ok_r) = segs[k], segs[k + 1]
                if not ok_r or not rhs:
                    continue
                step = None
                if ok_l and lhs and (_has_op(lhs) or _has_op(rhs)):
                    near = text[max(0, lhs[0].start - 40):rhs[-1].end + 60]
                    level = 2 if approx[k] else 1 if _ROUNDING.search(near) else 0
                    step = _check_pair(lhs, rhs, level, text, kind)
                if step is not None:
                    steps.append(step)
                elif _single_number(rhs) is not None:
                    t = _single_number(rhs)
                    loose.append((t.start, t.end))
    steps.sort(key=lambda s: s.result_start)
    return steps, sorted(set(loose))


def find_steps(text: str, task) -> list[Step]:
    """The arithmetic steps of a trace, in order, each checked exactly (see the module docstring)."""
    return scan(text, task)[0]


def step_validity(records, task) -> dict:
    """Fraction of valid arithmetic steps over a set of traces (records with `completion`, or strings)."""
    n_steps = n_valid = no_steps = all_valid = 0
    for rec in records:
        text = rec if isinstance(rec, str) else rec["completion"]
        steps = find_steps(text, task)
        n_steps += len(steps)
        good = sum(s.valid for s in steps)
        n_valid += good
        no_steps += not steps
        all_valid += bool(steps) and good == len(steps)
    n = len(records)
    return {"n_traces": n, "n_steps": n_steps, "n_valid": n_valid,
            "frac_valid": n_valid / n_steps if n_steps else None,
            "steps_per_trace": n_steps / n if n else None,
            "traces_without_steps": no_steps,
            "frac_traces_all_valid": all_valid / (n - no_steps) if n - no_steps else None}
