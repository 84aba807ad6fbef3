"""Final-answer extraction for GSM8K and MATH (strict grading; README "Grading contract", rules 1-4).

1. Answer statements: `\\boxed{...}` (boxes joined only by commas, "and", "or" or `x =` form ONE answer:
   "\\boxed{2} and \\boxed{3}" is "2, 3"; boxes that are all equivalent are one: "\\boxed{x+11} or
   \\boxed{11+x}"); "the final answer is ..."; "Final Answer: ..." and "**Answer:** ..." anywhere, "Answer: ..."
   at the start of a line; "#### ..." only when a math expression follows (is_math_line: a number, `$`, a
   bracket, a LaTeX command, a variable; no section number, no title colon, at most 3 words: "#### 72",
   "#### \\left( 3, \\frac{\\pi}{2} \\right)"), not a Markdown header ("#### Step 2: add",
   "#### \\textbf{Step 2}: add"); "the (final) answer is ..." as a statement ("this answer is unique" is none).
2. The final answer is the LAST statement by position: a later correction overrides an earlier answer. A
   statement is skipped (the one before it counts) when it is a hypothesis ("whether the answer is", "if the
   answer is", "suppose the answer is", "maybe the answer is"), a question ("... the answer is 5?"), a
   negation, verdict or remark ("the answer is not 5", "... is correct", "... is yes", "... is in simplest
   form", "... is positive"), or holds nothing.
3. Its span: the first `$...$` (an escaped `\\$` inside does not close it) / `\\(...\\)` / `\\[...\\]` if it
   starts with one, else the text up to the end of the sentence or an explanation ("because", "since", ", so",
   "(..."); empty after a label, the next line.
4. GSM8K alone falls back to the last number in the text (outside Markdown header lines, LaTeX thousands
   separators read: "32,\\!348" is 32348) when there is no statement.
Comparison (the `=` rule, hedges, equivalence) is in sot.tasks.equivalence.
"""
from __future__ import annotations

import re

# Comparison lives in sot.tasks.equivalence; re-exported here, where callers have always found it.
from sot.tasks.equivalence import (MAX_ANSWER_CHARS, NUMBER, after_equals, as_fraction, canonical,  # noqa: F401
                                   equivalent, first_number, normalize, numbers_in, parse_gold, plain_separators)

# Statement markers, matched around each literal anchor ("answer", "\\boxed"/"\\fbox", "####") so grading stays
# fast: (text just before "answer" must match, text right after must match).
_IS = (re.compile(r"(?:\b(?:the|my|our)\s+(?:(?:final|correct)\s+)?|\bfinal\s+)$", re.IGNORECASE),
       re.compile(r"\s+(?:is|would\s+be|will\s+be)\b", re.IGNORECASE))
_LABELS = ((re.compile(r"\bfinal\s+$", re.IGNORECASE), re.compile(r"[ \t]*(?:\*\*|__)?[ \t]*(?::|(?=\n))")),
           (re.compile(r"(?:\*\*|__)[ \t]*(?:final\s+)?$", re.IGNORECASE),
            re.compile(r"[ \t]*:?[ \t]*(?:\*\*|__)[ \t]*:?")),
           (re.compile(r"(?:^|\n)[ \t>#*_-]*$"), re.compile(r"[ \t]*(?:\*\*|__)?[ \t]*:")))
# Only the last MAX_STATEMENTS statements are looked at (adversarial text cannot make grading slow).
MAX_STATEMENTS = 100
# What follows "####" (rule 1): a math expression is an answer, words are a Markdown header. Bold and other
# text-formatting wrappers are looked through; math-mode text (\\text{...}) is part of an answer ("\\text{Evelyn}").
_WRAPPERS = re.compile(r"(?:\*\*|__|[ \t{]|\\(?:textbf|textit|textsc|emph|underline|mathbf|bf|it|(?:sub)*section\*?)"
                       r"(?![A-Za-z])\s*)*")
_MATH_START = re.compile(r"\\?\$|\\[(\[{]|[-\u2212+]?\.?\d|[(\[|]|\\[A-Za-z]|[-\u2212](?=\s*[\\(\[{$])"
                         r"|[-\u2212]?[A-Za-z](?![A-Za-z])(?!\s+[A-Za-z])")  # number, $, bracket, command, variable
_NUMBERED_HEADER = re.compile(r"\d+[.):][ \t]+[A-Za-z]")  # "#### 2. Simplify" is a header, not "#### 2"
# A title's colon: "Step 2: compute", "\\text{Case 1: } x > 0" (not "x : x > 0", ":=")
_TITLE = re.compile(r":(?![=:])\s*[A-Za-z]{2,}|(?<![\\A-Za-z])[A-Za-z]{2,}[ \t]*\d*[ \t]*:(?![=:])")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # a word, not a LaTeX command's name
MAX_UNIT_WORDS = 3  # "#### 5 dollars per hour" is an answer with its unit; more words are prose
# Words right before "(the) answer is" that make it a hypothesis, not an answer.
_HYPOTHESIS = re.compile(
    r"\b(?:whether|if|unless|suppose|supposing|assume|assuming|assumed|maybe|perhaps|possibly|guess|guessed|"
    r"thought|wonder|wondering|wondered|check|checking|verify|verifying|confirm|confirming|see|test|testing)"
    r"(?:\s+(?:that|whether|if|or\s+not))?\s+(?:(?:the|our|my|your|an|this)\s+)?(?:final\s+)?$", re.IGNORECASE)
_FILLER = re.compile(r"^(?:[:*_\s]|\b(?:indeed|therefore|thus|then|clearly|simply|just|exactly|still|actually|"
                     r"now|hence|so|finally|really|definitely)\b)+", re.IGNORECASE)
# A span starting with these says something about an answer, not what it is.
_VERDICT = re.compile(r"(?:not|correct|incorrect|right|wrong|reasonable|consistent|plausible|confirmed|verified|"
                      r"valid|invalid|unchanged|different|same|as\s+follows|below|above|given\s+by|obtained|found|"
                      r"yes|no|unique|positive|negative|in|a|an|the|that|this|also|always|never|clear|obvious|"
                      r"independent|shown|checked)\b", re.IGNORECASE)
_HOPE = re.compile(r"\.?\s*I hope it is correct.*", re.IGNORECASE | re.DOTALL)
_SENTENCE_END = re.compile(r"(?<!\\)[.!?;](?=\s|$)|\s+\(|(?:,\s*|\s+)(?:because|since|as|which|where|so|given|from|"
                           r"due|but|by|when|after|using)\b", re.IGNORECASE)
_HEADER_LINE = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*)$", re.MULTILINE)
_MORE_MATH = re.compile(r"\s*(?:,|;|\bor\b|\band\b)\s*(?:\$|\\\(|\\\[)")
_MATH_OPEN = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
# Between two boxes that form one answer: only separators and "x =" (\boxed{2} and \boxed{3}; x=\boxed{1}, y=...).
_JOINER = re.compile(r"(?:\s|\$|\\[()\[\]]|\\q?quad\b|[,;&]|\\\\|\\text\{\s*(?:and|or)?\s*,?\s*\}|\b(?:and|or)\b"
                     r"|\\?[A-Za-z]+(?:_\{?\w+\}?)?\s*=)*")


def _box_content(text: str, start: int) -> tuple[str, int] | None:
    """(content, end) of the box whose command starts at `start`; None if unbalanced, empty or too long."""
    i = text.index("\\", start) + 1
    while i < len(text) and text[i].isalpha():
        i += 1
    j = i
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "{":
        depth = 0
        for k in range(j, min(len(text), j + MAX_ANSWER_CHARS + 2)):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    content = text[j + 1:k].strip()
                    return (content, k + 1) if content else None
        return None
    if j > i:  # "\boxed 2$." form: one token after a space
        m = re.match(r"[^\s$]+", text[j:])
        if m and m.group(0).rstrip("."):
            return m.group(0).rstrip("."), j + m.end()
    return None


def last_boxed(text: str, max_tries: int = 20) -> str | None:
    """Content of the last `\\boxed{...}` (balanced braces) or `\\boxed x`; None if there is none.

    An unbalanced or empty one, or one longer than MAX_ANSWER_CHARS, is skipped for the one before it (at
    most `max_tries` are looked at, so adversarial text cannot make this slow).
    """
    start = text.rfind("\\boxed")
    for _ in range(max_tries):
        if start == -1:
            return None
        box = _box_content(text, start)
        if box is not None:
            return box[0]
        start = text.rfind("\\boxed", 0, start)
    return None


def _joined_boxes(text: str, boxes: list[tuple[int, int, str]]) -> str:
    """The last box, with the boxes just before it that form one answer with it, joined by ", "."""
    parts = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box[1]:parts[0][0]]
        if len(gap) > 60 or not _JOINER.fullmatch(gap):
            break
        parts.insert(0, box)
    contents = [content for _, _, content in parts]
    if len(contents) > 1 and all(equivalent(contents[-1], c) for c in contents[:-1]):
        return contents[-1]  # one answer written several ways: "\\boxed{x+11} or \\boxed{11+x}"
    return ", ".join(contents)


def _box_run(text: str, box_statements: list[tuple[int, str, int]]) -> str | None:
    """The answer of the last box statement (None if it is unbalanced or empty), joined with the boxes just
    before it that form one answer with it; earlier boxes are parsed only while they stay close."""
    last = _box_content(text, box_statements[-1][0])
    if last is None:
        return None
    boxes = [(box_statements[-1][0], last[1], last[0])]
    for pos, _, _ in reversed(box_statements[-20:-1]):  # a run of at most 20 boxes
        if boxes[0][0] - pos > MAX_ANSWER_CHARS + 80:
            break
        box = _box_content(text, pos)
        if box is None or boxes[0][0] - box[1] > 60:
            break
        boxes.insert(0, (pos, box[1], box[0]))
    return _joined_boxes(text, boxes)


def last_boxed_answer(text: str) -> str | None:
    """The answer the last box states: its content, joined with boxes that form one answer with it."""
    boxes = []
    for m in re.finditer(r"\\(?:boxed|fbox)\b", text):
        box = _box_content(text, m.start())
        if box is not None:
            boxes.append((m.start(), box[1], box[0]))
    return _joined_boxes(text, boxes) if boxes else None


def _math_segment(span: str) -> tuple[str, int] | None:
    """(content, end) of the math segment `span` starts with ("$x$", "\\(x\\)", ...); None if it starts with none."""
    for open_, close in _MATH_OPEN:
        if span.startswith(open_):
            end = span.find(close, len(open_))
            while close[0] == "$" and end > 0 and span[end - 1] == "\\":  # "$\\$32$": an escaped dollar
                end = span.find(close, end + 1)
            return (span[len(open_):end], end + len(close)) if end > 0 else None
    return None


def _clean(span: str, kind: str) -> str:
    """The answer in the text after a marker (rule 3)."""
    span = _HOPE.sub("", span)
    span = _FILLER.sub("", span) if kind == "is" else span.lstrip(" \t:*_")
    if kind == "is" and (_VERDICT.match(span) or span.rstrip().endswith("?")):
        return ""
    segment = _math_segment(span)
    if segment is not None and _MORE_MATH.match(span, segment[1]):
        segment = None  # "$2$ or $3$": the whole list is the answer (a hedge, or a list of values)
        span = re.sub(r"(?<!\\)\$|\\[()\[\]]", "", span)
    if segment is None:
        cut = _SENTENCE_END.search(span, 1)
        span = span[:cut.start()] if cut else span
    else:
        span = segment[0]
    span = span.strip().strip("*").strip().rstrip(".,;:!").strip()
    if span.startswith("\\text{") and span.endswith("}") and span.count("{") == 1:
        span = span[6:-1].strip()
    return span


def _span_after(text: str, pos: int) -> str:
    """The rest of the line after `pos`; if it is empty, the next non-empty line (display math kept whole).
    At most MAX_ANSWER_CHARS + 10 characters are looked at."""
    end = text.find("\n", pos, pos + MAX_ANSWER_CHARS + 10)
    line = text[pos:pos + MAX_ANSWER_CHARS + 10 if end == -1 else end]
    if line.strip(" \t:*_#") or end == -1:
        return line
    rest = text[end:end + MAX_ANSWER_CHARS + 10].lstrip()
    for open_, close in (("\\[", "\\]"), ("$$", "$$")):
        if rest.startswith(open_) and rest.find(close, 2) > 0:
            return rest[:rest.find(close, 2) + len(close)]
    return rest.split("\n", 1)[0]


def is_math_line(line: str) -> bool:
    """Rule 1 for "#### <line>": True when the line is a math expression (an answer), False for a header.

    It must start, past bold and text-formatting wrappers, with math (a number, `$`, a bracket, a LaTeX command
    such as `\\frac` or `\\text`, a one-letter variable), not be numbered like a section ("2. Add"), hold no
    title colon ("Step 2: compute") and at most MAX_UNIT_WORDS words (a unit: "5 dollars per hour").
    """
    line = line[:300]  # enough to tell; keeps grading fast on adversarial text
    start = _WRAPPERS.match(line).end()
    if not _MATH_START.match(line, start) or _NUMBERED_HEADER.match(line, start) or _TITLE.search(line):
        return False
    return sum(1 for _ in zip(range(MAX_UNIT_WORDS + 1), _WORD.finditer(line, start))) <= MAX_UNIT_WORDS


def _is_hypothesis(text: str, start: int) -> bool:
    before = text[max(0, start - 60):start]
    return bool(_HYPOTHESIS.search(before))


def _find_all(text: str, literal: str):
    i = text.find(literal)
    while i != -1:
        yield i
        i = text.find(literal, i + 1)


def _statements(text: str) -> list[tuple[int, str, int]]:
    """Every answer statement (rule 1) as (position, kind, end of marker), in text order."""
    found = []
    lower = text.lower()
    if len(lower) != len(text):  # a rare character changed length in lower(): search case-insensitively
        lower = re.sub(r"answer", "answer", text, flags=re.IGNORECASE)
    for i in _find_all(lower, "answer"):
        before = text[max(0, i - 40):i]
        after = _IS[1].match(text, i + 6)
        if after and _IS[0].search(before):
            found.append((i, "is", after.end()))
            continue
        for want_before, want_after in _LABELS:
            after = want_after.match(text, i + 6)
            if after and want_before.search(before):
                found.append((i, "label", after.end()))
                break
    for literal in ("\\boxed", "\\fbox"):
        for i in _find_all(text, literal):
            j = i + len(literal)
            if j >= len(text) or not text[j].isalpha():
                found.append((i, "boxed", j))
    for i in _find_all(text, "####"):
        end = text.find("\n", i + 4, i + 304)
        line = text[i + 4:i + 304 if end == -1 else end]
        if (i == 0 or text[i - 1] != "#") and is_math_line(line):
            found.append((i, "hashes", i + 4))
    found.sort()
    return found


def extract_answer(text: str, last_number_fallback: bool = False) -> str | None:
    """The final answer in `text` by rules 1-4 above; None when no answer is found."""
    if not text:
        return None
    statements = _statements(text)
    for k in range(len(statements) - 1, max(-1, len(statements) - 1 - MAX_STATEMENTS), -1):
        pos, kind, end = statements[k]
        if kind == "boxed":
            span = _box_run(text, [s for s in statements[:k + 1] if s[1] == "boxed"])
        elif kind == "is" and _is_hypothesis(text, pos):
            continue
        else:
            span = _clean(_span_after(text, end), kind)
        if span:
            return span if len(span) <= MAX_ANSWER_CHARS else None
    if last_number_fallback:  # Markdown header lines ("#### Step 3: ...") are no answers
        if "#" in text:
            text = _HEADER_LINE.sub(lambda m: m.group(0) if is_math_line(m.group(1)) else "", text)
        numbers = NUMBER.findall(plain_separators(text))
        if numbers:
            return numbers[-1].rstrip(",")
    return None
