"""Countdown (TinyZero schema {nums, target}): reach the target with + - * / using every number once.

Problems are generated from a seed, solvable by construction. There is no human trace: a solver writes
a step-by-step one ("Step 1: 75 - 12 = 63 ... <answer>(75 - 12) * 2</answer>") that stands in for H.
Grading parses the last <answer>...</answer> with `ast` (never eval): only non-negative integer literals,
binary + - * / (also written × \\times \\cdot ÷ \\div, or inside $...$), parentheses; no unary minus; a
trailing "= N" is allowed only when N is the target (a wrong claimed value, "... = 11" for target 10, is a
wrong answer); every given number used exactly once; exact value (fractions.Fraction) equal to the target;
division by zero is wrong.
`grade_authors` is the paper authors' rule instead (sot.tasks.authors.countdown_grade).
"""
from __future__ import annotations

import ast
import random
import re
from fractions import Fraction
from pathlib import Path

from sot.io import DataError, iter_jsonl
from sot.prompts import COUNTDOWN_TEMPLATE
from sot.tasks import authors
from sot.tasks.base import Grade, Problem, Task, content_id

# Split sizes and seeds (train and test are generated from different seeds and made disjoint).
SPLIT_SIZES = {"train": 10_000, "test": 1_000}
SPLIT_SEEDS = {"train": 20251, "test": 20252}
N_NUMBERS = (3, 4)          # TinyZero's Countdown-Tasks-3to4
NUM_RANGE = (1, 100)
TARGET_RANGE = (10, 100)
MAX_ANSWER_CHARS = 200
FIELDS = ("nums", "target")

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TRAILING_EQ = re.compile(r"=\s*(-?\d+(?:\.\d+)?)\s*$")
_NOTATION = (("\\times", "*"), ("\\cdot", "*"), ("\u00d7", "*"), ("\u00b7", "*"), ("\u22c5", "*"), ("\\div", "/"),
             ("\u00f7", "/"), ("\u2212", "-"), ("\\left(", "("), ("\\right)", ")"), ("\n", " "))
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction:
    return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b


def _node_text(node) -> str:
    """Infix text with only the parentheses that precedence and order need."""
    if not isinstance(node, tuple):
        return str(node)
    op, left, right = node
    lt, rt = _node_text(left), _node_text(right)
    if isinstance(left, tuple) and _PREC[left[0]] < _PREC[op]:
        lt = f"({lt})"
    if isinstance(right, tuple) and (_PREC[right[0]] < _PREC[op] or (_PREC[right[0]] == _PREC[op] and op in "-/")):
        rt = f"({rt})"
    return f"{lt} {op} {rt}"


def _fmt(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def generate_problems(n: int, seed: int, n_numbers=N_NUMBERS, num_range=NUM_RANGE,
                      target_range=TARGET_RANGE, exclude=()) -> list[dict]:
    """`n` distinct {nums, target} records; each target is the value of a random expression over its
    numbers with positive whole intermediate results, so every problem is solvable."""
    sizes = (n_numbers,) if isinstance(n_numbers, int) else tuple(n_numbers)
    rng, seen, out = random.Random(seed), {(tuple(sorted(k[0])), k[1]) for k in exclude}, []
    attempts, size = 0, rng.choice(sizes)
    while len(out) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise ValueError(f"could not generate {n} problems with target_range={target_range}; widen it")
        nums = [rng.randint(*num_range) for _ in range(size)]  # size is drawn per problem, kept on retries
        values = list(nums)
        while len(values) > 1:
            a, b = (values.pop(rng.randrange(len(values))) for _ in range(2))
            a, b = max(a, b), min(a, b)
            ops = ["+", "*"] + (["-"] if a > b else []) + (["/"] if b > 1 and a % b == 0 else [])
            values.append(int(_apply(rng.choice(ops), Fraction(a), Fraction(b))))
        target, key = values[0], (tuple(sorted(nums)), values[0])
        if target_range[0] <= target <= target_range[1] and key not in seen:
            seen.add(key)
            out.append({"nums": nums, "target": target})
            size = rng.choice(sizes)
    return out


def _search(items: list, target: Fraction, whole: bool):
    """Depth-first search over pair merges; items are (value, node). Returns a node or None."""
    if len(items) == 1:
        return items[0][1] if items[0][0] == target else None
    for i in range(len(items)):
        for j in range(len(items)):
            if i == j:
                continue
            (a, na), (b, nb) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            for op in "+-*/":
                if (op in "+*" and i > j) or (op == "/" and b == 0):
                    continue
                v = _apply(op, a, b)
                if whole and (v.denominator != 1 or v <= 0):
                    continue
                found = _search(rest + [(v, (op, na, nb))], target, whole)
                if found is not None:
                    return found
    return None


def _solve_tree(nums, target):
    items = [(Fraction(x), x) for x in nums]
    for whole in (True, False):  # prefer positive whole intermediate results, as in the game
        node = _search(items, Fraction(target), whole)
        if node is not None:
            return node
    return None


def solve(nums, target) -> str | None:
    """An expression using every number once that equals `target`, or None when there is none."""
    node = _solve_tree(list(nums), target)
    return None if node is None else _node_text(node)


def reference_trace(nums, target) -> str:
    """The solver-written step-by-step trace ending in <answer>expression</answer>."""
    node = _solve_tree(list(nums), target)
    if node is None:
        raise ValueError(f"countdown problem nums={list(nums)} target={target} has no solution")
    steps: list[str] = []

    def walk(n) -> Fraction:
        if not isinstance(n, tuple):
            return Fraction(n)
        a, b = walk(n[1]), walk(n[2])
        v = _apply(n[0], a, b)
        steps.append(f"Step {len(steps) + 1}: {_fmt(a)} {n[0]} {_fmt(b)} = {_fmt(v)}")
        return v

    walk(node)
    return "\n".join(steps) + f"\n<answer>{_node_text(node)}</answer>"


def _leaves(node, source: str, out: list[int]) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        _leaves(node.left, source, out)
        _leaves(node.right, source, out)
    elif (isinstance(node, ast.Constant) and type(node.value) is int
          and (ast.get_source_segment(source, node) or "").isdigit()):
        out.append(node.value)
    else:
        raise ValueError("only whole numbers, + - * / and parentheses are allowed")


def _value(node) -> Fraction:
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    return _apply(_OPS[type(node.op)], _value(node.left), _value(node.right))


def _plain_notation(expression: str) -> str:
    """The expression in ASCII operators: a `$...$` / `\\(...\\)` wrapper dropped, × \\times \\cdot · as *,
    ÷ \\div as /, the Unicode minus as -, \\left( \\right) as parentheses, newlines as spaces."""
    text = expression.strip()
    if text.isascii() and "\\" not in text and "$" not in text:
        return text.replace("\n", " ")
    for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(text) > len(open_) + len(close) and text.startswith(open_) and text.endswith(close):
            text = text[len(open_):-len(close)]
            break
    for old, new in _NOTATION:
        text = text.replace(old, new)
    return text


def check_expression(expression: str, nums, target) -> bool:
    """True when `expression` uses every number of `nums` exactly once and equals `target` exactly; a trailing
    "= N" must name the target."""
    text = _plain_notation(expression)
    claimed = _TRAILING_EQ.search(text)
    if claimed:
        if Fraction(claimed.group(1)) != Fraction(target):
            return False
        text = text[:claimed.start()]
    text = text.strip()
    if not text or len(text) > MAX_ANSWER_CHARS:
        return False
    try:
        tree = ast.parse(text, mode="eval").body
        used: list[int] = []
        _leaves(tree, text, used)
        if sorted(used) != sorted(int(x) for x in nums):
            return False
        return _value(tree) == Fraction(target)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, MemoryError):
        return False


def _validate(rec: dict, where: str) -> None:
    nums, target = rec.get("nums"), rec.get("target")
    if not isinstance(nums, list) or not nums or not all(type(x) is int for x in nums):
        raise DataError(f"{where}: field 'nums' must be a non-empty list of integers, got {nums!r}")
    if type(target) is not int:
        raise DataError(f"{where}: field 'target' must be an integer, got {target!r}")


class Countdown(Task):
    name = "countdown"
    splits = ("train", "test")

    def from_record(self, record: dict, id: str | None = None, split: str = "train") -> Problem:
        _validate(record, f"Countdown record {id or '?'}")
        nums, target = list(record["nums"]), record["target"]
        try:
            trace = reference_trace(nums, target)
        except ValueError as e:
            raise DataError(f"Countdown record {id or '?'}: {e}") from None
        return Problem(id=id or content_id(self.name, split, record), task=self.name,
                       question=COUNTDOWN_TEMPLATE.format(nums=nums, target=target), reference=trace,
                       answer=_ANSWER.findall(trace)[-1], record=dict(record))

    def grade(self, problem: Problem, completion: str) -> Grade:
        found = _ANSWER.findall(completion or "")
        expression = found[-1].strip() if found else ""
        if not expression:
            return Grade(False, None)
        return Grade(check_expression(expression, problem.record["nums"], problem.record["target"]), expression)

    def grade_authors(self, problem: Problem, completion: str) -> Grade:
        """The authors' eval_countdown.py rule: last line's <answer> only (see sot.tasks.authors)."""
        return authors.countdown_grade(problem.record["nums"], problem.record["target"], completion)

    def generated_split(self, split: str) -> list[dict]:
        """The generated records of a split; train excludes every test problem."""
        test = generate_problems(SPLIT_SIZES["test"], SPLIT_SEEDS["test"])
        if split == "test":
            return test
        return generate_problems(SPLIT_SIZES["train"], SPLIT_SEEDS["train"],
                                 exclude=[(r["nums"], r["target"]) for r in test])

    def _local_records(self, split: str, data_dir: Path) -> list[tuple[str, dict]]:
        path = data_dir / "countdown" / f"{split}.jsonl"
        if not path.exists():  # Countdown is generated unless a TinyZero-schema file is supplied
            return self._hub_records(split)
        pairs = []
        for i, (lineno, rec) in enumerate(iter_jsonl(path, required=FIELDS)):
            _validate(rec, f"{path}:{lineno}")
            pairs.append((f"countdown/{split}/{i}", rec))
        return pairs

    def _hub_records(self, split: str) -> list[tuple[str, dict]]:
        return [(f"countdown/{split}/{i}", r) for i, r in enumerate(self.generated_split(split))]
