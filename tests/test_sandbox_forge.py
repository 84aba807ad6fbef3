"""Wrong MBPP functions that try to forge a correct verdict (issue 25's seven classes, several phrasings each),
in both isolation modes: none may grade correct. Each probe is a real forger of the old in-process path
(``test_probes_forge_the_in_process_path`` shows that for the classes where the old path had a hole), so a pass
here means the new path closed it, not that the probe is broken."""
from __future__ import annotations

import textwrap

import pytest

from sot import sandbox
from sot.sandbox import run_program
from sot.tasks.base import Problem
from sot.tasks.mbpp import MBPP, build_program

RECORD = {"text": "Add two numbers.", "code": "def add(a, b):\n    return a + b", "task_id": 9001,
          "test_setup_code": "", "challenge_test_list": [],
          "test_list": ["assert add(2, 3) == 5", "assert add(-4, 1) == -3", "assert add(10, 20) == 30"]}
PROBLEM = Problem("mbpp/forge", "mbpp", "Add two numbers.", RECORD["code"], None, RECORD)
WRONG = "def add(a, b):\n    return a - b\n"
# the runner's argv inside the sandbox: ['-c', mode, uid, program fd, result fd, nonce fd, limits...]
FDS = "import os, sys\nRES, NONCE = int(sys.argv[4]), int(sys.argv[5])\n"

PROBES = {
    # 1. the nonce pipe's fd from argv, and a forged end (with or without forged result lines)
    "argv-nonce-end": FDS + "os.write(RES, b'D ' + os.read(NONCE, 256) + b'\\n')\nos._exit(0)\n",
    "argv-nonce-done-lines": FDS + "n = os.read(NONCE, 256)\n"
                                  "os.write(RES, b'R 0 d\\nR 1 d\\nR 2 d\\nD ' + n + b'\\n')\nos._exit(0)\n",
    "argv-true-values": FDS + "n = os.read(NONCE, 256)\n"
                              "os.write(RES, b'R 0 v B1\\nR 1 v B1\\nR 2 v B1\\nD ' + n + b'\\n')\nos._exit(0)\n",
    "argv-old-stdout-line": FDS + "print('__sot_sandbox_done__ ' + os.read(NONCE, 256).decode())\nos._exit(0)\n",
    "argv-forge-then-continue": FDS + "os.write(RES, b'R 0 v B1\\nR 1 v B1\\nR 2 v B1\\n')\n",
    # 2. an excepthook that, on the failure, finds the pipes in /proc/self/fd and writes the end line
    "excepthook-proc-fd": WRONG.replace("a - b", "a - b if a < 0 else 1 / 0") + textwrap.dedent("""\
        import os, sys
        def hook(*args):
            nonce = b''
            for name in os.listdir('/proc/self/fd'):
                try:
                    os.set_blocking(int(name), False)
                    nonce = nonce or os.read(int(name), 256)
                except OSError:
                    pass
            for name in os.listdir('/proc/self/fd'):
                try:
                    os.write(int(name), b'R 0 v B1\\nR 1 v B1\\nR 2 v B1\\nD ' + nonce + b'\\n')
                except OSError:
                    pass
            os._exit(0)
        sys.excepthook = hook
        """),
    "excepthook-readlink": WRONG.replace("a - b", "1 / 0") + textwrap.dedent("""\
        import os, sys
        def hook(*args):
            pipes = [int(n) for n in os.listdir('/proc/self/fd') if 'pipe' in os.readlink('/proc/self/fd/' + n)]
            for fd in pipes:
                try:
                    os.write(fd, b'D forged\\n')
                except OSError:
                    pass
            os._exit(0)
        sys.excepthook = hook
        """),
    # 3. gc / frame walking to the runner's state, looking for the expected values
    "gc-strings": textwrap.dedent("""\
        import ast, gc, re
        def add(a, b):
            for obj in gc.get_objects():
                for text in (obj if isinstance(obj, (list, tuple)) else [obj]):
                    for line in text.splitlines() if isinstance(text, str) else []:
                        if 'add(%r,%r)==' % (a, b) in line.replace(' ', ''):
                            return ast.literal_eval(line.split('==', 1)[1])
            return a - b
        """),
    "gc-runner-globals": textwrap.dedent("""\
        import gc
        def add(a, b):
            for obj in gc.get_objects():
                if isinstance(obj, dict) and 'run_steps' in obj:
                    obj['encode'] = lambda value: 'i5'
                    obj['write_line'] = lambda fd, line: None
            return a - b
        """),
    # 4. objects whose == always answers True
    "eq-object": "class Yes:\n    def __eq__(self, other):\n        return True\n"
                 "def add(a, b):\n    return Yes()\n",
    "eq-int-subclass": "class Num(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
                       "def add(a, b):\n    return Num(a - b)\n",
    "ne-list-subclass": "class L(list):\n    def __ne__(self, other):\n        return False\n"
                        "    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return L([a - b])\n",
    "eq-metaclass-tricks": "class Meta(type):\n    def __instancecheck__(cls, obj):\n        return True\n"
                           "class Any(metaclass=Meta):\n    __eq__ = lambda self, other: True\n"
                           "def add(a, b):\n    return Any()\n",
    # 5. the caller's frames: the runner's copy of the program, parsed for the expected value
    "frame-locals": textwrap.dedent("""\
        import ast, sys
        def add(a, b):
            frame = sys._getframe(1)
            while frame is not None:
                for value in list(frame.f_locals.values()):
                    texts = value if isinstance(value, (list, tuple)) else [value]
                    for text in texts:
                        text = text[-1] if isinstance(text, tuple) else text
                        if isinstance(text, str) and '==' in text:
                            for line in text.splitlines():
                                if line.replace(' ', '').startswith('assertadd(%r,%r)' % (a, b)):
                                    return ast.literal_eval(line.split('==', 1)[1])
                frame = frame.f_back
            return a - b
        """),
    # 6. the caller's bytecode: the constant the assert compares with
    "dis-caller-const": textwrap.dedent("""\
        import dis, sys
        def add(a, b):
            code = sys._getframe(1).f_code
            consts = [i.argval for i in dis.get_instructions(code) if i.opname == 'LOAD_CONST']
            return consts[-1] if consts else a - b
        """),
    "dis-compare-operand": textwrap.dedent("""\
        import dis, sys
        def add(a, b):
            frame = sys._getframe(1)
            ops = list(dis.get_instructions(frame.f_code))
            here = [i for i, op in enumerate(ops) if op.offset >= frame.f_lasti]
            after = [op.argval for op in ops[here[0]:] if op.opname == 'LOAD_CONST'] if here else []
            return after[0] if after else a - b
        """),
    # 7. rewriting the interpreter's objects in memory
    "ctypes-retype": textwrap.dedent("""\
        import ctypes
        class Liar:
            def __eq__(self, other):
                return True
        def add(a, b):
            obj = Liar()
            ctypes.c_void_p.from_address(id(obj) + 8).value = id(int)
            return obj
        """),
    "code-swap-runner": textwrap.dedent("""\
        import gc
        def add(a, b):
            for f in gc.get_objects():
                if getattr(f, '__name__', '') in ('encode', 'compare', 'judge') and hasattr(f, '__code__'):
                    f.__code__ = (lambda *args: 'B1').__code__
            return a - b
        """),
    # a process that dies or writes garbage
    "garbage": FDS + "os.write(RES, b'\\xff\\x00garbage\\n')\n",
    "out-of-order": FDS + "os.write(RES, b'R 2 v i1e\\nR 1 v i-3\\nR 0 v i5\\n')\nos._exit(0)\n",
    "close-channel": FDS + "os.close(RES)\n",
    "dies-in-call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "flood-channel": FDS + "import os\nos.write(RES, b'R 0 v ' + b'L1 ' * 100 + b'\\n')\nwhile True:\n"
                           "    os.write(RES, b'x' * 65536)\n",
}
OLD_PATH_FORGERS = ("eq-object", "eq-int-subclass", "frame-locals", "dis-compare-operand", "argv-nonce-end")


@pytest.fixture(params=["bubblewrap", "rlimits"])
def mode(request, monkeypatch):
    try:
        sandbox.launcher(request.param)
    except sandbox.SandboxUnavailable as err:
        pytest.skip(str(err))
    monkeypatch.setattr(sandbox, "isolation", lambda: request.param)
    return request.param


def verdict(code: str) -> dict:
    return MBPP(timeout=3.0).verdicts([PROBLEM], [f"```python\n{code}\n```"], workers=1)[0]


def test_the_right_answer_passes(mode):
    v = verdict(RECORD["code"])
    assert v["correct"] and v["path"] == "returned values, compared by the grader" and v["weak_asserts"] == []
    assert not verdict(WRONG)["correct"]


@pytest.mark.parametrize("name", sorted(PROBES))
def test_no_probe_forges_a_correct_verdict(mode, name):
    v = verdict(PROBES[name])
    assert v["correct"] is False, (name, v)
    assert v["failed"], "a wrong verdict says why"


@pytest.mark.parametrize("name", OLD_PATH_FORGERS)
def test_probes_forge_the_in_process_path(name):
    """The same probes pass asserts run inside the program (the weaker path): the probes are real."""
    code = PROBES[name] + "\nimport sys\n"
    assert run_program(build_program(RECORD, code), timeout=3.0).passed, name


# --- the comparison rules, on the trusted side -------------------------------------------------------
@pytest.mark.parametrize("test,returned,correct", [
    ("assert f(1) == [1, 2]", [1, 2], True), ("assert f(1) == [1, 2]", (1, 2), False),  # list vs tuple
    ("assert f(1) == (1, 2)", (1, 2), True), ("assert [1, 2] == f(1)", [1, 2], True),
    ("assert f(1) == 1", 1.0, True), ("assert f(1) == 1", True, True), ("assert f(1) == 0.3", 0.1 + 0.2, False),
    ("assert f(1) == float('nan')", float("nan"), False), ("assert f(1) == set([1, 2])", {2, 1}, True),
    ("assert set(f(1)) == {1, 2}", {1, 2}, True), ("assert f(1) == {'a': [1]}", {"a": [1]}, True),
    ("assert f(1) == sorted([3, 1])", [1, 3], True), ("assert f(1) == frozenset()", frozenset(), True),
    ("assert f(1) != 3", 4, True), ("assert f(1) != 3", 3, False),
    ("assert f(1) is True", True, True), ("assert f(1) is True", 1, False), ("assert f(1) is None", None, True),
    ("assert f(1) is not None", 0, True), ("assert f(1) in (1, 2)", 2, True), ("assert f(1) not in [1]", 1, False),
    ("assert math.isclose(f(1), 3.14, rel_tol=0.001)", 3.1415, True),
    ("assert math.isclose(3.14, f(1), abs_tol=0.01)", 3.2, False), ("assert math.isclose(f(1), 1.0)", "1", False),
    ("assert f(1)", [0], True), ("assert f(1)", "", False), ("assert not f(1)", 0, True),
    ("assert f(1) == 'x', 'a message'", "x", True),
])
def test_comparison_rules(test, returned, correct):
    from sot.sandbox_checks import compare, parse_test

    check = parse_test(test)
    assert check.strong and "f(1)" in check.call and "f(1)" not in repr(check.expected)
    assert compare(check, returned) is correct


@pytest.mark.parametrize("test", ["assert f(1) == g(2)", "assert f(x) == sys.getsizeof(x)", "x = f(1)",
                                  "assert f(1) is 5", "assert 3 in f(1)", "assert f(1) == 1 == g(1)", "assert (",
                                  "assert abs(f(1) - 3.14) < 0.01",
                                  "assert (f(1) == 5) == True", "assert f(1) == 5 or g()", "assert not (f(1) != 5)",
                                  "assert math.isclose(f(1) if 1 else 0, 2.0)", "assert f(1 == 1) == 2"])
def test_unfit_asserts_take_the_named_weaker_path(test):
    from sot.sandbox_checks import parse_test

    check = parse_test(test)
    assert not check.strong and check.step() == ("exec", test)


def test_every_mbpp_assert_is_counted(data_dir):
    """The MBPP asserts that do not fit (call, expected) are few and known; they keep the in-process path."""
    import json

    from sot.sandbox_checks import parse_test

    records = [json.loads(line) for line in open(data_dir / "mbpp" / "mbpp.jsonl")]
    tests = [t for r in records for t in r["test_list"] + r["challenge_test_list"]]
    weak = sorted({r["task_id"] for r in records for t in r["test_list"] + r["challenge_test_list"]
                   if not parse_test(t).strong})
    assert len(tests) == 2938 and weak == [596]


def test_weak_path_is_named_and_still_grades(mode):
    record = dict(RECORD, test_list=["assert add(2, 3) == 5", "assert add(1, 1) == int('2')",
                                     "assert add(2, 2) == add(1, 3)"])
    problem = Problem("mbpp/weak", "mbpp", "", RECORD["code"], None, record)
    good, bad = MBPP(timeout=3.0).verdicts([problem, problem], [RECORD["code"], WRONG], workers=1)
    assert good["correct"] and good["path"].startswith("in-process asserts (weaker")
    assert good["weak_asserts"] == ["assert add(2, 2) == add(1, 3)"]
    assert not bad["correct"]


# --- the result channel ----------------------------------------------------------------------------
@pytest.mark.parametrize("expression", ["None", "True", "False", "0", "-1", "7 ** 9000", "1.5", "float('-inf')",
                                        "-0.0", "1+2j", "''", "'\\xe9\\ud800 x\\n'", "b'\\x00\\xff'", "[]", "()",
                                        "set()", "frozenset()", "{}", "[1, (2, {3: 'a'})]",
                                        "{(1, 2): frozenset({1}), 'k': [None, [[]]]}"])
def test_plain_values_round_trip(mode, expression):
    value = eval(expression)
    result = run_program("", mode=mode, timeout=5.0, steps=[("call", expression)])
    assert result.passed and result.steps[0].kind == "value"
    assert result.steps[0].value == value and type(result.steps[0].value) is type(value)
    assert expression == "7 ** 9000" or repr(result.steps[0].value) == repr(value)  # -0.0, signs, escapes


def test_known_builtin_subclasses_count_by_content(mode):
    source = ("import collections\nP = collections.namedtuple('P', 'x y')\n"
              "class Ok(list):\n    pass\n")
    calls = ["collections.Counter('aab')", "collections.defaultdict(list, a=[1])", "P(1, 2)", "Ok([1])",
             "collections.OrderedDict(a=1)"]
    result = run_program(source, mode=mode, timeout=5.0, steps=[("call", c) for c in calls])
    assert [o.value for o in result.steps] == [{"a": 2, "b": 1}, {"a": [1]}, (1, 2), [1], {"a": 1}]
    assert [type(o.value) for o in result.steps] == [dict, dict, tuple, list, dict]


@pytest.mark.parametrize("lines", ["R 0 v\n", "R 0 v i\n", "R 0 v L2 i1\n", "R 0 v i1 i2\n", "R 1 v i1\n",
                                   "R 0 v E1 L0\n", "R 0 q\n", "R 0 v i1\nR 0 v i1\n", "R 0 v i1", "\xff\n",
                                   "R 0 v " + "L1 " * 100 + "N\n", "D nonce\n", "R 0 v i1\nD nonce\nR 1 d\n",
                                   "R 0 v D1 L0 i1\n", "R 0 v c1\n", "R 0 v szz\n"])
def test_malformed_channels_are_rejected(lines):
    from sot.sandbox_verdict import Malformed, read_channel

    with pytest.raises(Malformed):
        read_channel(lines.encode("latin-1"), 1, "nonce")


# --- extraction: bounded, and nothing that ends the program is hoisted -------------------------------
def test_fence_scan_matches_the_old_regex():
    import random
    import re

    from sot.tasks.mbpp_extract import FENCE

    old = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(["`", "```", "\n", " ", "\t", "py", "x", "`` "]) for _ in range(rng.randint(0, 25)))
        assert FENCE.findall(text) == old.findall(text), repr(text)
        assert FENCE.sub("", text) == old.sub("", text), repr(text)


@pytest.mark.parametrize("text", ["`" * 49_000, "```" + "`" * 40_000 + "\n" + "`" * 9_000, "```\n" * 12_000,
                                  "x=1\n" * 12_000 + "prose at the end", "def f(:\n" + "(" * 40_000,
                                  "def f():\n" + "    return (1 +\n" * 4_000 + "prose"])
def test_extraction_time_is_bounded(text):
    import time

    from sot.tasks.mbpp_extract import extract

    start = time.process_time()
    extract(text, {"f"})
    assert time.process_time() - start < 3.0


def test_oversized_completion_is_wrong_with_a_reason():
    from sot.tasks.mbpp_extract import MAX_COMPLETION_CHARS

    v = verdict(RECORD["code"] + "\n#" + "x" * MAX_COMPLETION_CHARS)
    assert v["correct"] is False and v["extracted"] is None and "limit" in v["reason"]


@pytest.mark.parametrize("usage", ["import os; os._exit(0)", "import sys; sys.exit(0)", "raise SystemExit",
                                   "exit()", "quit()", "import os\nos.kill(os.getpid(), 9)",
                                   "import os\nx = os._exit(0)", "import sys\nclass A:\n    sys.exit(1)",
                                   "import os\n@os._exit\ndef g():\n    pass",
                                   "def g(x=__import__('os')._exit(0)):\n    pass"])
def test_ungraded_blocks_cannot_end_the_program(usage):
    completion = (f"```python\nimport math\n{usage}\n```\n```python\ndef add(a, b):\n    return g0(a) + b\n```\n"
                  f"```python\ndef g0(x):\n    return x\n{usage}\n```\n```python\nprint(add(1, 2))\n{usage}\n```")
    v = MBPP(timeout=3.0).verdicts([PROBLEM], [completion], workers=1)[0]
    assert v["correct"], (usage, v["extracted"], v["failed"])
