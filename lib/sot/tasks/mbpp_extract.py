"""The code to test in an MBPP completion (README "Grading contract"), in bounded time.

Bounds: a completion over MAX_COMPLETION_CHARS is not read at all (``extract`` says why: graded wrong); fenced
blocks are found by a hand scan, linear in the text (a regex would restart at every backtick of a long run);
the unfenced fallback spends at most PARSE_BUDGET_CHARS characters on ``ast.parse`` while it trims trailing
prose. Only definitions are taken from blocks that are not graded (imports, and the helpers the graded block
calls): never a statement that runs on its own and could end the program (``os._exit(0)`` in a usage example).
"""
from __future__ import annotations

import ast
import builtins
import re
import textwrap

MAX_COMPLETION_CHARS = 50_000  # about 12k tokens: far above any decoding cap this pipeline uses
PARSE_BUDGET_CHARS = 200_000  # characters given to ast.parse while trimming prose off unfenced code
PYTHON_TAGS = ("python", "py", "python3", "")
_LANG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")
_CALLED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")
_NOT_TESTED = frozenset(dir(builtins)) | {"assert", "not", "and", "or", "in", "is", "lambda", "if", "else"}
_DEFINED = re.compile(r"^(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)|^([A-Za-z_]\w*)[ \t]*=(?!=)", re.MULTILINE)
_IMPORT = re.compile(r"^(?:import|from)[ \t]+\S.*$", re.MULTILINE)
_CODE_START = re.compile(r"^(?:def|class|import|from|async[ \t]+def|@)\b", re.MULTILINE)
# calls allowed where a hoisted definition runs something at definition time (decorators, defaults, constants)
_SAFE_CALLS = frozenset({"lru_cache", "cache", "wraps", "total_ordering", "dataclass", "staticmethod",
                         "classmethod", "property", "list", "dict", "set", "tuple", "frozenset", "range", "int",
                         "float", "str", "bytes", "len", "sorted", "defaultdict", "Counter", "OrderedDict",
                         "deque", "namedtuple", "compile"})


class Fences:
    """Fenced blocks: ``` + optional tag + rest of line, then the body up to the next ``` (or the end).
    ``findall``/``sub`` behave like the regex this replaces, in one left-to-right pass."""

    @staticmethod
    def spans(text: str):
        pos = 0
        while True:
            start = text.find("```", pos)
            newline = text.find("\n", start + 3) if start >= 0 else -1
            if newline < 0:
                return  # no opening fence with a line end after it: no more blocks
            i = start + 3
            while i < newline and text[i] in " \t":
                i += 1
            j = i
            while j < newline and text[j] in _LANG_CHARS:
                j += 1
            close = text.find("```", newline + 1)
            end = len(text) if close < 0 else close + 3
            yield start, end, text[i:j], text[newline + 1:close if close >= 0 else len(text)]
            if close < 0:
                return
            pos = end

    def findall(self, text: str) -> list[tuple[str, str]]:
        return [(lang, body) for _, _, lang, body in self.spans(text)]

    def sub(self, replacement: str, text: str) -> str:
        parts, pos = [], 0
        for start, end, _, _ in self.spans(text):
            parts += [text[pos:start], replacement]
            pos = end
        return "".join(parts) + text[pos:]


FENCE = Fences()


def functions_under_test(test_list) -> set[str]:
    """Names the asserts call that are not builtins: the functions (or classes) the completion must define."""
    return {name for test in test_list for name in _CALLED.findall(test) if name not in _NOT_TESTED}


def _defined(code: str) -> set[str]:
    """Top-level names a block defines (def, class, assignment)."""
    return {a or b for a, b in _DEFINED.findall(code)}


def _parse(code: str):
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _unfenced(completion: str) -> str:
    """Code without fences: the whole text if it parses; else from the first def/class/import line, with
    trailing prose lines dropped until it parses (at most 40, within PARSE_BUDGET_CHARS), so
    "Here is the code:\\ndef f..." counts."""
    if _parse(completion) is not None:
        return completion
    start = _CODE_START.search(completion)
    if not start:
        return completion
    lines = completion[start.start():].split("\n")
    budget = PARSE_BUDGET_CHARS - len(completion)
    for cut in range(len(lines), max(0, len(lines) - 40), -1):
        candidate = "\n".join(lines[:cut])
        budget -= len(candidate)
        if budget < 0:
            break
        if _parse(candidate) is not None:
            return candidate
    return "\n".join(lines)


def _calls(node: ast.AST) -> set[str]:
    """Names of everything ``node`` calls (the last part of a dotted name)."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            found.add(func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute)
                      else "<expression>")
    return found


def _runs_at_definition(node: ast.stmt) -> list[ast.AST]:
    """The parts of a definition that run when it is defined (a function's body runs only when called)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d)]
    if isinstance(node, ast.ClassDef):
        parts = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
        for stmt in node.body:
            inner = _runs_at_definition(stmt)
            if inner is None:
                return None
            parts += inner
        return parts
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        return [node]
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a docstring
        return []
    return None  # anything else runs on its own: never hoisted


def definitions(code: str) -> str:
    """Only the definitions of an ungraded block whose definition-time parts call nothing but _SAFE_CALLS;
    a block that does not parse, or that redefines one of those names, gives nothing."""
    tree = _parse(code)
    if tree is None or _defined(code) & _SAFE_CALLS:
        return ""
    kept = []
    for node in tree.body:
        parts = _runs_at_definition(node)
        if parts is not None and all(_calls(part) <= _SAFE_CALLS for part in parts):
            kept.append(ast.get_source_segment(code, node))
    return "\n".join(kept)


def imports(code: str) -> list[str]:
    """The import statements on a block's import lines (``import os; os._exit(0)`` gives ``import os``)."""
    found = []
    for line in _IMPORT.findall(code):
        tree = _parse(line.strip())
        if tree is not None:
            found += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return found


def extract(completion: str, names=()) -> tuple[str | None, str]:
    """(code, why): the code to test, or None with the reason there is none. Fenced blocks (a final one cut off
    before its closing fence counts), dedented; Python-tagged or untagged ones (all, if none is). The last
    block that defines one of ``names`` (the functions the tests call), after the imports and the definitions of
    helpers it calls from the other blocks; else every block joined in order; else the unfenced completion."""
    if not completion or not completion.strip():
        return None, "empty completion"
    if len(completion) > MAX_COMPLETION_CHARS:
        return None, f"completion of {len(completion)} characters, over the {MAX_COMPLETION_CHARS} limit"
    blocks = [(lang.lower(), textwrap.dedent(code)) for lang, code in FENCE.findall(completion)]
    python = [code for lang, code in blocks if lang in PYTHON_TAGS] or [code for _, code in blocks]
    defining = [i for i, code in enumerate(python) if set(names) & _defined(code)]
    if defining:
        code = python[defining[-1]]
        others = [c for i, c in enumerate(python) if i != defining[-1]]
        missing = set(_CALLED.findall(code)) - _defined(code) - _NOT_TESTED
        helpers = [d for c in others if missing & _defined(c) and (d := definitions(c))]
        have = set(imports(code + "\n" + "\n".join(helpers)))
        hoisted = list(dict.fromkeys(s for c in others for s in imports(c) if s not in have))
        code = "\n\n".join(part.strip("\n") for part in ["\n".join(hoisted), *helpers, code] if part.strip())
    elif python:
        code = "\n\n".join(c.strip("\n") for c in python)
    else:
        code = _unfenced(completion)
    code = code.strip("\n")
    return (code, "") if code.strip() else (None, "no code in the completion")
