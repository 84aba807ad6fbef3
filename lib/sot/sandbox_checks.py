"""Test asserts split into what the sandbox computes and what only the grader knows (the trusted side).

    checks = parse_tests(['assert add(2, 3) == 5', 'assert math.isclose(area(2), 12.56, rel_tol=0.01)'])
    checks[0].call, checks[0].op, checks[0].expected     # 'add(2, 3)', '==', 5
    steps = [check.step() for check in checks]            # what enters the sandbox: ("call", 'add(2, 3)'), ...
    ok, why = judge(checks, result)                       # result: sot.sandbox.RunResult of those steps

An assert is parsed with ``ast`` (never run here) into a CALL (the expression that involves the code under
test, sent to the sandbox and evaluated there) and an EXPECTED value that only this process holds. Shapes:
``assert E == X`` (either side), ``E != X``, ``E is X`` / ``E is not X`` (X None, True or False), ``E in X`` /
``E not in X``, ``math.isclose(E, X, rel_tol=.., abs_tol=..)`` (either order), ``assert E`` and ``assert not E``,
where E holds no comparison, ``and``/``or`` or ``if`` (one would be decided in the sandbox, by the program's
objects) and X is trusted data: a literal (``ast.literal_eval``) or one of ``set frozenset tuple list dict sorted
float int str bytes complex`` applied to literals. The comparison runs here on the value the program returned
as plain data (``sot.sandbox_verdict``), with Python's own rules for those builtin types (``==`` between a
list and a tuple is False, ``1 == 1.0`` is True, NaN equals nothing), so it means what the assert meant.
Anything else (e.g. ``assert f(x) == sys.getsizeof(x)``: both sides need the program's interpreter) becomes an
in-process statement step: the old, weaker path, whose verdict the program could forge; ``judge`` says so.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

TRUSTED_CALLS = {f.__name__: f for f in (set, frozenset, tuple, list, dict, sorted, float, int, str, bytes,
                                         complex)}
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_SINGLETONS = (None, True, False)


class NotTrusted(ValueError):
    """An expression this process will not evaluate (it is not plain literal data)."""


@dataclass(frozen=True)
class Check:
    """One assert. ``call`` is None for the weaker in-process path (``source`` then runs as a statement)."""
    source: str
    call: str | None
    op: str = ""
    expected: object = None
    options: dict = field(default_factory=dict)

    @property
    def strong(self) -> bool:
        return self.call is not None

    def step(self) -> tuple[str, str]:
        """What the sandbox receives for this assert: the call only, or (weaker path) the whole statement."""
        return ("call", self.call) if self.call is not None else ("exec", self.source)


def trusted_value(node: ast.AST) -> object:
    """The value of a literal expression (plus TRUSTED_CALLS of literals), without running anything."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in TRUSTED_CALLS
            and not node.keywords and len(node.args) <= 1):
        try:
            return TRUSTED_CALLS[node.func.id](*(trusted_value(arg) for arg in node.args))
        except (TypeError, ValueError, OverflowError) as err:
            raise NotTrusted(f"{ast.unparse(node)}: {err}") from None
    raise NotTrusted(ast.unparse(node)[:80])


def _trusted(node: ast.AST) -> bool:
    try:
        trusted_value(node)
        return True
    except NotTrusted:
        return False


def _is_isclose(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Attribute) and func.attr == "isclose" and isinstance(func.value, ast.Name)
            and func.value.id == "math") or (isinstance(func, ast.Name) and func.id == "isclose")


def parse_test(source: str) -> Check:
    """The Check for one assert statement (the weaker path when it does not fit a shape above)."""
    weak = Check(source, None)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return weak
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return weak
    test = tree.body[0].test

    def segment(node):
        return "(" + ast.get_source_segment(source, node) + ")"

    def decides(node):  # a comparison inside the call would be decided in the sandbox, by the program's objects
        return any(isinstance(n, (ast.Compare, ast.BoolOp, ast.IfExp)) for n in ast.walk(node))

    if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _COMPARE:
        op, left, right = _COMPARE[type(test.ops[0])], test.left, test.comparators[0]
        if op in ("==", "!=") and _trusted(left) and not _trusted(right):
            left, right = right, left
        if _trusted(left) or not _trusted(right) or decides(left):
            return weak
        expected = trusted_value(right)
        if op in ("is", "is not") and not any(expected is s for s in _SINGLETONS):
            return weak  # identity of anything else depends on the interpreter's caching
        return Check(source, segment(left), op, expected)
    if _is_isclose(test) and len(test.args) == 2:
        first, second = test.args
        if _trusted(first) and not _trusted(second):
            first, second = second, first
        if _trusted(first) or not _trusted(second) or decides(first) or not all(
                k.arg in ("rel_tol", "abs_tol") and _trusted(k.value) for k in test.keywords):
            return weak
        options = {k.arg: trusted_value(k.value) for k in test.keywords}
        return Check(source, segment(first), "isclose", trusted_value(second), options)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and not _trusted(test.operand):
        return weak if decides(test.operand) else Check(source, segment(test.operand), "falsy")
    if not _trusted(test) and not decides(test):
        return Check(source, segment(test), "truthy")
    return weak


def parse_tests(tests) -> list[Check]:
    return [parse_test(t) for t in tests]


def compare(check: Check, value: object) -> bool:
    """The assert's comparison, here, on plain builtin data the program returned."""
    try:
        if check.op == "==":
            return bool(value == check.expected)
        if check.op == "!=":
            return bool(value != check.expected)
        if check.op == "is":
            return value is check.expected
        if check.op == "is not":
            return value is not check.expected
        if check.op == "in":
            return bool(value in check.expected)
        if check.op == "not in":
            return bool(value not in check.expected)
        if check.op == "isclose":
            return type(value) in (int, float, bool) and math.isclose(value, check.expected, **check.options)
        if check.op == "truthy":
            return bool(value)
        if check.op == "falsy":
            return not value
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError):
        return False
    raise ValueError(f"unknown comparison {check.op!r} in check {check.source!r}")


def judge(checks: list[Check], result) -> tuple[bool, dict]:
    """(correct, details) for a run of ``[c.step() for c in checks]``. Correct: the program ran to its end, its
    result channel was well-formed, and every check holds; details name the path used ("returned values,
    compared by the grader" or, when any assert needed it, the weaker "in-process asserts"), the memory
    limit, and the first check that failed with why."""
    weak = [c.source for c in checks if not c.strong]
    details = {"path": "in-process asserts (weaker: the program could forge these)" if weak else
               "returned values, compared by the grader", "weak_asserts": weak, "status": result.status,
               "memory_limit": result.memory_limit, "failed": None}
    if result.channel_error:
        details["failed"] = result.channel_error
        return False, details
    for check, outcome in zip(checks, result.steps):
        if check.strong and outcome.kind == "value" and compare(check, outcome.value):
            continue
        if not check.strong and outcome.kind == "done":
            continue
        why = {"value": "returned a different value", "not_plain": f"returned non-plain data ({outcome.note})",
               "error": f"raised {outcome.note}", "missing": "never answered", "done": "wrong kind of answer"}
        details["failed"] = f"{check.source}: {why.get(outcome.kind, outcome.kind)}"
        return False, details
    if not result.passed:
        details["failed"] = f"the program did not run to its end ({result.status})"
        return False, details
    return True, details
