"""The trusted side of the sandbox's result channel: read what a program returned, strictly, as plain data.

The runner (``sot.sandbox_runner``) writes one line per step, in order, then ``D <nonce>``:

    R <k> v <tokens>     call k returned this value (tokens: ``sot.sandbox_runner.encode``)
    R <k> x <type>       call k returned something that is not plain data (counts wrong)
    R <k> e <exception>  step k raised
    R <k> d              statement k ran (the weaker, in-process path)
    D <nonce>            everything ran

The program under test shares a process with the runner, so it can write to the channel too. That is harmless:
the grader knows how many steps there are and in which order, builds only builtin values from the tokens (no
``eval``, no pickle, no objects of the program's classes), and compares them with expected values the program
never saw. A line out of order, a repeated or missing step, an unknown tag, a malformed value or anything
after the last line makes the whole channel malformed: the run is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

RESULT_LIMIT = 4 << 20  # bytes the grader reads from one program's result channel
DEPTH_LIMIT = 64
_SCALARS = {"N": None, "B1": True, "B0": False}
_CONTAINERS = {"L": list, "U": tuple, "E": set, "Z": frozenset, "D": dict}


class Malformed(ValueError):
    """The result channel does not follow the protocol above."""


@dataclass(frozen=True)
class Outcome:
    """What one step did: kind "value" (``value`` holds it), "not_plain", "error", "done" or "missing";
    ``note`` names the exception or type the program reported (its own words: for details only)."""
    kind: str
    value: object = None
    note: str = ""


MISSING = Outcome("missing")


def _scalar(token: str) -> object:
    if token in _SCALARS:
        return _SCALARS[token]
    tag, body = token[:1], token[1:]
    try:
        if tag == "i":
            return int(body, 16)
        if tag == "f":
            return float.fromhex(body)
        if tag == "c":
            real, imag = body.split(",")
            return complex(float.fromhex(real), float.fromhex(imag))
        if tag == "s":
            return bytes.fromhex(body).decode("utf-8", "surrogatepass")
        if tag == "y":
            return bytes.fromhex(body)
    except (ValueError, UnicodeDecodeError, OverflowError) as err:
        raise Malformed(f"bad value token {token[:40]!r}: {err}") from None
    raise Malformed(f"unknown value token {token[:40]!r}")


def _build(kind: str, items: list) -> object:
    try:
        if kind == "D":
            return dict(zip(items[0::2], items[1::2]))
        return _CONTAINERS[kind](items)
    except TypeError as err:  # an unhashable set member or dict key
        raise Malformed(f"bad container: {err}") from None


def decode(text: str) -> object:
    """The builtin value a ``v`` line carries (iterative: depth and size are bounded, never recursion)."""
    tokens = text.split(" ")
    stack: list[tuple[str, int, list]] = []  # (container tag, items still expected, items so far)
    result, done = None, False
    for token in tokens:
        if done:
            raise Malformed("tokens after the end of the value")
        tag = token[:1]
        if tag in _CONTAINERS and token not in _SCALARS:
            try:
                count = int(token[1:])
            except ValueError:
                raise Malformed(f"bad container token {token[:40]!r}") from None
            if count < 0 or count > len(tokens):
                raise Malformed(f"container of {count} items in a value of {len(tokens)} tokens")
            if len(stack) >= DEPTH_LIMIT:
                raise Malformed(f"nested deeper than {DEPTH_LIMIT}")
            stack.append((tag, count * 2 if tag == "D" else count, []))
            if stack[-1][1] > 0:
                continue
            item = _build(tag, stack.pop()[2])
        else:
            item = _scalar(token)
        while True:
            if not stack:
                result, done = item, True
                break
            tag, left, items = stack[-1]
            items.append(item)
            stack[-1] = (tag, left - 1, items)
            if left - 1 > 0:
                break
            item = _build(tag, stack.pop()[2])
    if not done:
        raise Malformed("value ends inside a container")
    return result


def read_channel(data: bytes, steps: int, nonce: str) -> tuple[tuple[Outcome, ...], bool]:
    """(one Outcome per step, finished): finished when the nonce line came after every step.
    Raises Malformed when the channel breaks the protocol (then the run is wrong)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise Malformed("non-ASCII bytes on the result channel") from None
    lines = text.split("\n")
    if lines[-1] != "":
        raise Malformed("the result channel ends in the middle of a line")
    outcomes: list[Outcome] = []
    finished = False
    for line in lines[:-1]:
        if finished:
            raise Malformed("a line after the end line")
        if line.startswith("D "):
            if len(outcomes) != steps or line[2:] != nonce:
                raise Malformed("an end line before the last step, or with the wrong nonce")
            finished = True
            continue
        parts = line.split(" ", 3)
        if len(parts) < 3 or parts[0] != "R" or parts[1] != str(len(outcomes)) or len(outcomes) >= steps:
            raise Malformed(f"line {len(outcomes) + 1}: expected 'R {len(outcomes)} ...', got {line[:60]!r}")
        tag, rest = parts[2], parts[3] if len(parts) == 4 else ""
        if tag == "v":
            outcomes.append(Outcome("value", decode(rest)))
        elif tag in ("x", "e"):
            outcomes.append(Outcome("not_plain" if tag == "x" else "error", note=rest[:200]))
        elif tag == "d" and not rest:
            outcomes.append(Outcome("done"))
        else:
            raise Malformed(f"unknown result tag {tag[:10]!r}")
    outcomes += [MISSING] * (steps - len(outcomes))
    return tuple(outcomes), finished
