"""The paper authors' published scoring rules, re-implemented so that the "authors" accuracy is theirs.

Source: github.com/abhranilchandra/Shape-of-Thought at commit ccca3bd, the evaluation phase of
eval_math_gsm8k.py, eval_countdown.py and gen_plus_eval_codegen_mbpp.py (read, not copied). Every function
returns a Grade whose `correct` is their verdict and whose `extracted` is None exactly when their script
leaves the item out of the accuracy's denominator (authors' accuracy = correct / (extracted is not None)).
Their generation step `.strip()`s every completion; so do these functions, before anything else. Their
generation-time stop strings are not applied here: the completion is scored as given.

MATH and GSM8K (eval_math_gsm8k.py; it does not parse as published, line 34 reads
`Problem:# Few-shot (4-shot) prompt template`, and DEFAULT_TEST_DATASET_PATH is never defined; its evaluation
loop is intact and followed here): math-verify `parse` with its default extraction on the WHOLE reference
solution (the dataset's `solution` text; for GSM8K the `answer` text ending in "#### N") and on the whole
completion, `verify(gold, pred)` with its defaults. A side whose parse is empty (or holds a string over 5,000
characters) is a parsing failure: left out of the denominator. A `verify` that raises counts as wrong.
Timeouts are math-verify's defaults (5 s, signal-based: in the main thread only, as in their script).

Countdown (eval_countdown.py, compute_score and the summary): only the LAST LINE of the completion is read,
and its last <answer>...</answer>; none (or an empty completion) is a parsing failure, left out. Otherwise
the item counts: correct only when the numbers in the tag (every digit run, so a written "= 10" adds a 10)
are exactly the given numbers, the text uses only digits, + - * / ( ) . and spaces, and its Python value is
within 1e-5 of the target. Their `eval` is replaced by an `ast` walk with Python's own arithmetic (so `**`,
`//` and unary minus behave as there); a power whose exact result would exceed 10**7 bits is an evaluation
error (in their run: MemoryError, caught, counted wrong) instead of an unbounded computation.

MBPP (gen_plus_eval_codegen_mbpp.py): every item counts. The code is the completion with every "```python"
and "```" removed (the prose stays), a leading "python" dropped; code that `ast.parse` rejects is wrong.
Otherwise their runner layout is rebuilt: `import json, sys, re`; the test_setup_code pasted UNINDENTED into a
`try:` block (so any non-empty setup, tasks 367 and 927, fails to compile: their defect, kept); the code
indented into a second `try:`; every test_list assert exec'd; a JSON report printed. It passes only when the
whole stdout is that one JSON object with all tests passed, so a program that prints anything fails, as
there. It runs in sot.sandbox with their 5 s timeout (under `python -S`, no network, memory limit).
"""
from __future__ import annotations

import ast
import json
import math
import operator
import re
import threading
from functools import lru_cache

from sot.tasks.base import Grade

MATH_VERIFY_TIMEOUT_S = 5     # math-verify's parse/verify defaults, which their script keeps
MAX_PARSED_STR = 5000         # their "overly long" filter on parsed strings
MBPP_TIMEOUT_S = 5.0          # their TIMEOUT_SECONDS
POW_MAX_BITS = 10 ** 7

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>")
_ALLOWED = re.compile(r"^[\d+\-*/().\s]+$")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


# --- MATH and GSM8K -------------------------------------------------------------------------------------
def _timeout() -> int | None:
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str):
    """Their extract_final_answer: math-verify's default parse, or None (empty, too long, or an error)."""
    from math_verify import parse

    try:
        parsed = parse(text, parsing_timeout=_timeout())
    except Exception:
        return None
    if not parsed or any(isinstance(p, str) and len(p) > MAX_PARSED_STR for p in parsed):
        return None
    return parsed


@lru_cache(maxsize=16384)
def _parse_reference(reference: str):
    return _parse(reference)


def math_verify_grade(reference: str, completion: str) -> Grade:
    """eval_math_gsm8k.py: parse(reference solution) vs parse(completion), verify; None when either fails."""
    from math_verify import verify

    gold, pred = _parse_reference(reference), _parse((completion or "").strip())
    if gold is None or pred is None:
        return Grade(False, None)
    shown = next((p for p in reversed(pred) if isinstance(p, str)), str(pred[0]))
    try:
        return Grade(bool(verify(gold, pred, timeout_seconds=_timeout())), shown)
    except Exception:  # their loop counts a verify error as attempted and wrong
        return Grade(False, shown)


# --- Countdown ------------------------------------------------------------------------------------------
def _value(node):
    """Python's value of an arithmetic ast (what their restricted eval computes); raises on anything else."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _value(node.left), _value(node.right)
        if (type(node.op) is ast.Pow and type(a) is int and type(b) is int and b > 0 and abs(a) > 1
                and b * math.log2(abs(a)) > POW_MAX_BITS):
            raise MemoryError("power too large to compute")
        return _BINOPS[type(node.op)](a, b)
    raise TypeError(f"not arithmetic: {type(node).__name__}")


def countdown_grade(nums, target, completion: str) -> Grade:
    """eval_countdown.py: score 1 is correct; 0.5/0.1 count as wrong; 0 (no tag on the last line) is left out."""
    text = (completion or "").strip()
    found = _ANSWER_TAG.findall(text.split("\n")[-1]) if text else []
    if not found:
        return Grade(False, None)
    equation = found[-1].strip()
    try:
        if sorted(int(n) for n in re.findall(r"\d+", equation)) != sorted(nums):
            return Grade(False, equation)
    except ValueError:  # a digit run too long for int(): their validate_equation returns False
        return Grade(False, equation)
    if not _ALLOWED.match(equation):
        return Grade(False, equation)
    try:
        return Grade(bool(abs(_value(ast.parse(equation, mode="eval").body) - target) < 1e-5), equation)
    except Exception:  # SyntaxError, ZeroDivisionError, OverflowError, ...: their evaluate_equation gives None
        return Grade(False, equation)


# --- MBPP -----------------------------------------------------------------------------------------------
def mbpp_code(completion: str) -> str:
    """Their sanitize_code: fences removed wherever they are, a leading "python" dropped, stripped."""
    code = re.sub(r"```python", "", (completion or "").strip(), flags=re.IGNORECASE).replace("```", "")
    if code.strip().lower().startswith("python"):
        code = code.strip()[6:]
    return code.strip()


def mbpp_compiles(code: str) -> bool:
    """Their check_compilability: `ast.parse` accepts the code."""
    try:
        ast.parse(code)
        return True
    except Exception:
        return False


def mbpp_runner(code: str, record: dict) -> str:
    """Their test-runner layout (see the module docstring), written out for `code` and the record's tests."""
    setup = record.get("test_setup_code") or "    pass"
    body = "\n".join("    " + line for line in code.splitlines())
    report = 'print(json.dumps({{"status": "{}", "all_passed": {}}}))'
    return "\n".join([
        "import json", "import sys", "import re", "try:", setup, "except Exception:",
        "    " + report.format("setup_error", "False"), "    sys.exit(0)", "try:", body, "except Exception:",
        "    " + report.format("runtime_error", "False"), "    sys.exit(0)", "_all_passed = True",
        f"for _test in {json.dumps(list(record['test_list']))}:", "    try:", "        exec(_test)",
        "    except Exception:", "        _all_passed = False", report.format("completed", "_all_passed"), ""])


_HARNESS = '''import io, json, sys
_out, _real = io.StringIO(), sys.stdout
sys.stdout = _out
try:
    exec(compile({runner!r}, "<authors-runner>", "exec"), {{"__name__": "__main__"}})
except BaseException:
    pass
finally:
    sys.stdout = _real
_text = _out.getvalue().strip()
try:
    _report = json.loads(_text) if _text.startswith("{{") and _text.endswith("}}") else None
except ValueError:
    _report = None
if not (isinstance(_report, dict) and _report.get("status") == "completed" and _report.get("all_passed") is True):
    raise SystemExit(1)
'''


def mbpp_program(code: str, record: dict) -> str:
    """A sandbox program that runs their runner with stdout captured and ends normally only on their pass."""
    return _HARNESS.format(runner=mbpp_runner(code, record))
