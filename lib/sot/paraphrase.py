"""Stage paraphrase: an LM rewrites each human trace (H) in its own words; what the keep rule keeps is P.

Steps: fill the prompt template ({question}, {solution}) for every H record, generate with a sot.llm
backend (chat messages), extract the trace from the reply, grade every extracted paraphrase with the task
and keep those that pass the keep rule below. With sampling.n > 1 the first sample (in sample order)
that passes is kept.

Extraction, not scraping: the prompt asks for the trace between <rewritten> and </rewritten> (a tag that
no task uses; Countdown's own answers are in <answer> tags, which stay inside the trace) and shows the
format in one line, short enough for the 0.5B instruct teacher to follow. Only what is inside the LAST
complete pair is kept, verbatim except for the whitespace next to the tags; whatever a model writes around
it (a "Here is the rewritten solution:" line, a "## Rewritten Solution" heading, an echoed "Problem: ...
Solution:" block, a closing "Note: ...") is never part of P. A reply without a complete pair is dropped,
and every drop is counted with its reason (REASONS).

The keep rule: P is meant to be H reworded, so a paraphrase is kept only if it
1. grades correct with the task's grader;
2. states its final answer the way the task's answer contract reads it (`states_answer`). For GSM8K that
   is an answer statement ("The answer is 72", "#### 72", \\boxed{72}, ...: sot.tasks.answers), not the
   grader's last-number fallback: with the 0.5B teacher many "correct" replies are one-line answers
   ("Josh has $3 left.") that grade correct only through that fallback. MATH's grader reads statements
   only, Countdown's the <answer> tags and MBPP's the code, so for them grading correct already says it;
3. keeps the reasoning: its length is at least `min_length_ratio` (default 0.5) of H's, in words
   (whitespace-separated, GSM8K's `<<48/2=24>>` calculator annotations left out of both: they are machine
   notes, not reasoning a paraphrase must copy). Words rather than arithmetic steps, because MBPP code has
   no steps and a faithful paraphrase may write "half of 48 is 24" instead of an equation; rather than model
   tokens, because the rule then needs no tokenizer and reads the same for every teacher. Half leaves room
   for a terser rewording (the prompt asks for every step) and is far above what a bare answer reaches: in
   the demo (Qwen2.5-Coder-0.5B, 12 GSM8K traces) the 5 replies that graded correct were all one-liners at
   0.04-0.16 of H's words, while the MBPP paraphrases that kept the code were at 0.83-1.0;
4. is not H itself: a reply whose words are H's words (whitespace and calculator annotations aside) is
   dropped as `unchanged` (MBPP's teacher often copies the code verbatim, reindented).
0. (before the others) has no commentary inside the tags: a first line that introduces the trace ("Here is
   the completed Python code:") or a last line that comments on it ("This code defines ...", "Note: ...") drops
   it as `commentary` (the CPU study's MBPP P had one such trace before this rule).
The drop reasons, in the order the checks run: no_tags, unclosed, empty (extraction), commentary (rule 0),
unparseable, wrong_answer (grading), no_answer_statement (rule 2), too_short (rule 3), unchanged (rule 4).
"""
from __future__ import annotations

import bisect
import hashlib
import re
from collections import Counter
from typing import Sequence

from sot.io import DataError
from sot.tasks.answers import extract_answer

TAG = "rewritten"
# The reply is opened with the tag (an assistant-turn prefix, sot.prompts.render_messages): a 0.5B teacher asked
# to answer inside tags wrote 7 of 12 GSM8K replies without them; opened for it, it only has to close the tag.
OPEN = f"<{TAG}>\n"


def answer_line(task, solution: str) -> str | None:
    """The line of a GSM8K / MATH / Countdown solution that states its final answer (the last line holding an
    answer statement: "#### 72", a \\boxed{...}, an <answer> tag); None for MBPP (code) or when there is none."""
    if task.name == "mbpp":
        return None
    for line in reversed([x.strip() for x in solution.splitlines() if x.strip()]):
        if task.name == "countdown" and "<answer>" in line:
            return line
        if task.name != "countdown" and extract_answer(line, last_number_fallback=False) is not None:
            return line
    return None


KEEP_LINE = "\n\nEnd your rewritten solution with this final line, exactly as it is:\n{line}"


def rewrite_request(task, problem, solution: str, template: str, keep_answer_line: bool = False) -> list[dict]:
    """The chat request of a rewrite: the template filled with the problem as the dataset states it
    (task.statement: without the answer-format instruction, which a small model answers instead of rewriting)
    and the solution, then the assistant's reply opened with the tag. keep_answer_line (paraphrases): the
    request also quotes the solution's final answer line and asks for it verbatim at the end (the 0.5B teacher
    otherwise reworded it away in 10 of 12 GSM8K paraphrases, which then state no answer)."""
    content = fill_template(template, task.statement(problem), solution)
    line = answer_line(task, solution) if keep_answer_line else None
    if line:
        content += KEEP_LINE.format(line=line)
    return [{"role": "user", "content": content}, {"role": "assistant", "content": OPEN}]


def reply_text(sample_text: str) -> str:
    """The whole reply: the opening tag it was given, then what the model wrote."""
    return OPEN + sample_text
DEFAULT_TEMPLATE = """Rewrite the solution below in your own words. Keep every step, every intermediate result \
and the final answer, in the same format as the original (for example a last line "#### 72", \\boxed{...}, \
<answer>...</answer>, or the Python code block with the same function).

Problem:
{question}

Solution:
{solution}

Reply with your rewritten solution between <rewritten> and </rewritten>, like this:
<rewritten>your rewritten solution</rewritten>"""

# Why an output is not used, in the order extraction, grading and the keep rule (module docstring) find them.
REASONS = ("no_tags", "unclosed", "empty", "commentary", "unparseable", "wrong_answer", "no_answer_statement",
           "too_short", "unchanged")
# A reply that talks to the reader inside the tags (the CPU study's MBPP P had "Here is the completed Python
# code:" as its first line): a first line that introduces what follows, or a last line that comments on it.
_PREAMBLE = re.compile(r"^(?:sure|certainly|of course|okay|here(?:'s| is| are)|below is|the (?:rewritten|following|"
                       r"completed|updated|revised))\b[^\n]*:$", re.I)
_CLOSING = re.compile(r"^(?:(?:note|explanation)\s*:|(?:this|the above) (?:code|solution|function|rewritten)\b|"
                      r"i hope\b|hope this\b|let me know\b)", re.I)
DEFAULT_MIN_LENGTH_RATIO = 0.5
# Tasks whose answers are statements (sot.tasks.answers); GSM8K's grader also falls back on the last number,
# so there a correct grade alone does not say that the trace states its answer.
_STATEMENT_TASKS = ("gsm8k", "math")
# Length-ratio histogram of the metrics: bins of 0.1 from 0 to 2, the last one open (>= 2).
RATIO_EDGES = tuple(round(0.1 * k, 1) for k in range(21))
EXAMPLES_PER_REASON = 2
_PLACEHOLDER = re.compile(r"\{(question|solution)\}")
_ANNOTATION = re.compile(r"<<[^<>\n]*>>")


def fill_template(template: str, question: str, solution: str) -> str:
    """The template with {question} and {solution} substituted (other braces, e.g. \\boxed{...}, kept)."""
    missing = [p for p in ("{question}", "{solution}") if p not in template]
    if missing:
        raise ValueError(f"prompt template lacks the placeholder {missing[0]}; it needs both "
                         "{question} and {solution} (params.yaml, paraphrase/corrupt template)")
    return _PLACEHOLDER.sub(lambda m: question if m.group(1) == "question" else solution, template)


def extract_tagged(text: str, tag: str = TAG) -> tuple[str | None, str | None]:
    """(content of the last complete <tag>...</tag> pair, None) or (None, reason).

    Tags match case-insensitively; the content is kept verbatim but for the whitespace next to the tags.
    Reasons: "no_tags" (no pair), "unclosed" (an opening tag that is never closed, e.g. a reply cut by the
    length limit), "empty" (a pair with nothing inside)."""
    opening = re.compile(rf"<\s*{re.escape(tag)}\s*>", re.I)
    closing = re.compile(rf"<\s*/\s*{re.escape(tag)}\s*>", re.I)
    ends = list(closing.finditer(text))
    starts = [m for m in opening.finditer(text) if not ends or m.end() <= ends[-1].start()]
    if not ends or not starts:
        return None, ("unclosed" if opening.search(text) else "no_tags")
    start = starts[-1].end()
    end = next(m.start() for m in ends if m.start() >= start)   # the first closing tag after it: a repeated
    content = text[start:end].strip()                             # "</rewritten>" never ends up inside
    return (content, None) if content else (None, "empty")


def template_id(template: str) -> str:
    return hashlib.sha256(template.encode()).hexdigest()[:16]


def _words(text: str | None) -> list[str]:
    return _ANNOTATION.sub(" ", text or "").split()


def reasoning_words(text: str) -> int:
    """Length of a trace for the keep rule: whitespace-separated words, GSM8K calculator annotations
    (`<<48/2=24>>`) left out."""
    return len(_words(text))


def length_ratio(paraphrase_text: str, reference: str) -> float | None:
    """Words of the paraphrase over words of the human trace it rewrites (None when H has no words)."""
    base = reasoning_words(reference)
    return reasoning_words(paraphrase_text) / base if base else None


def states_answer(task, text: str) -> bool:
    """Whether `text` states its final answer as the task's answer contract reads it (rule 2 of the module
    docstring): GSM8K and MATH need an answer statement (sot.tasks.answers.extract_answer without GSM8K's
    last-number fallback); for the other tasks the grader reads only the contract's own form (Countdown's
    <answer> tags, MBPP's code), so a trace that grades correct states it."""
    if getattr(task, "name", task) in _STATEMENT_TASKS:
        return extract_answer(text, last_number_fallback=False) is not None
    return True


def has_commentary(text: str) -> bool:
    """Whether the trace's first line introduces it ("Here is the rewritten solution:") or its last line
    comments on it ("This code defines ...", "Note: ...")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return bool(lines) and (bool(_PREAMBLE.match(lines[0])) or bool(_CLOSING.match(lines[-1])))


def judge(task, text: str | None, reason: str | None, grade, reference: str,
          min_length_ratio: float = DEFAULT_MIN_LENGTH_RATIO) -> tuple[str, float | None]:
    """(outcome, length ratio) of one sample: "correct" (kept) or its drop reason (REASONS), by the checks
    in the module docstring's order; the ratio is None where no text was extracted."""
    if text is None:
        return reason, None
    ratio = length_ratio(text, reference)
    if has_commentary(text):
        return "commentary", ratio
    if not grade.correct:
        return ("unparseable" if grade.extracted is None else "wrong_answer"), ratio
    if not states_answer(task, text):
        return "no_answer_statement", ratio
    if ratio is not None and ratio < min_length_ratio:
        return "too_short", ratio
    if _words(text) == _words(reference):
        return "unchanged", ratio
    return "correct", ratio


def ratio_histogram(ratios: Sequence[float], edges: Sequence[float] = RATIO_EDGES) -> list[int]:
    """Counts per bin [edges[i], edges[i+1]); the last bin counts every ratio >= edges[-1]."""
    counts = [0] * len(edges)
    for r in ratios:
        counts[max(0, bisect.bisect_right(edges, r) - 1)] += 1
    return counts


def _check_ratio(min_length_ratio) -> None:
    if isinstance(min_length_ratio, bool) or not isinstance(min_length_ratio, (int, float)) \
            or not 0 <= min_length_ratio <= 1:
        raise ValueError(f"paraphrase.min_length_ratio must be a number in [0, 1] (the least fraction of H's words "
                         f"a paraphrase keeps), got {min_length_ratio!r} (params.yaml)")


def paraphrase(h_records: Sequence[dict], problems, task, backend, sampling, template: str = DEFAULT_TEMPLATE,
               workers: int | None = None, progress: bool = True,
               min_length_ratio: float = DEFAULT_MIN_LENGTH_RATIO) -> tuple[list[dict], dict]:
    """P records (category "P", in H order, only those the keep rule keeps: module docstring) and metrics.

    h_records: H set records {id, completion, ...}; problems: Problems (list or id->Problem);
    backend: sot.llm backend; sampling: sot.llm.Sampling; template: str with {question} and {solution}.
    Metrics: requested, kept, keep_rate, graded_correct (traces with a sample that grades correct: what
    grading alone would keep), dropped {reason: traces} (a dropped trace counts once, under the reason of its
    sample that got furthest, the later in REASONS the further), sample_outcomes {correct | reason: samples},
    truncated_samples (finish_reason "length"), length_ratio_hist {edges, counts per outcome} over the
    extracted samples, dropped_examples (the first EXAMPLES_PER_REASON dropped traces per reason, text
    shortened to 600 characters), min_length_ratio."""
    _check_ratio(min_length_ratio)
    by_id = problems if isinstance(problems, dict) else {p.id: p for p in problems}
    for i, rec in enumerate(h_records):
        if rec.get("id") not in by_id:
            raise DataError(f"H record {i}: id {rec.get('id')!r} is not among the problems")
    fill_template(template, "", "")  # fail on a bad template before any generation
    probs = [by_id[r["id"]] for r in h_records]
    requests = [rewrite_request(task, p, r["completion"], template, keep_answer_line=True)
                for p, r in zip(probs, h_records)]
    outputs = backend.generate(requests, sampling, progress=progress) if requests else []
    flat = [(i, j, s) for i, samples in enumerate(outputs) for j, s in enumerate(samples)]
    extracted = [extract_tagged(reply_text(s.text)) for _, _, s in flat]
    todo = [k for k, (text, _) in enumerate(extracted) if text is not None]
    graded = dict(zip(todo, task.grade_many([probs[flat[k][0]] for k in todo], [extracted[k][0] for k in todo],
                                            workers=workers)))
    info = backend.info() if hasattr(backend, "info") else {}
    chosen, outcomes, per_trace, ratios = {}, [], {}, {}
    for k, (i, j, s) in enumerate(flat):
        text, reason = extracted[k]
        outcome, ratio = judge(task, text, reason, graded.get(k), h_records[i]["completion"], min_length_ratio)
        outcomes.append(outcome)
        per_trace.setdefault(i, []).append((outcome, k))
        if ratio is not None:
            ratios.setdefault(outcome, []).append(ratio)
        if outcome == "correct" and i not in chosen:
            chosen[i] = (j, s, text, graded[k], ratio)
    records = []
    for i, rec in enumerate(h_records):
        if i not in chosen:
            continue
        j, s, text, g, ratio = chosen[i]
        source = {"base": "H", "model": info.get("model"), "backend": info.get("backend"), "sample": j,
                  "n_tokens": s.n_tokens, "finish_reason": s.finish_reason, "template": template_id(template),
                  "extracted": g.extracted, "tag": TAG, "length_ratio": ratio,
                  "truncated": False}   # the trace is a whole tag pair even if the reply ran on after it
        records.append({"id": rec["id"], "task": probs[i].task, "category": "P", "prompt": probs[i].question,
                        "completion": text, "source": source})
    n = len(h_records)
    rank = {r: k for k, r in enumerate(REASONS)}
    furthest = {i: max(per_trace.get(i, [("no_tags", None)]), key=lambda x: rank.get(x[0], -1))
                for i in range(n) if i not in chosen}
    dropped = Counter(reason for reason, _ in furthest.values())
    examples = []
    for reason in REASONS:
        for i in [i for i, (r, _) in furthest.items() if r == reason][:EXAMPLES_PER_REASON]:
            k = furthest[i][1]
            text = None if k is None else (extracted[k][0] or flat[k][2].text)   # the trace, else the whole reply
            g = graded.get(k)
            examples.append({"id": h_records[i]["id"], "reason": reason, "text": _shorten(text, 600),
                             "extracted": _shorten(g.extracted, 200) if g is not None else None,
                             "length_ratio": None if k is None or extracted[k][0] is None
                             else length_ratio(extracted[k][0], h_records[i]["completion"])})
    metrics = {"requested": n, "samples_per_trace": getattr(sampling, "n", 1), "kept": len(records),
               "keep_rate": len(records) / n if n else None,
               "graded_correct": len({i for i, items in per_trace.items()
                                      if any(o in ("correct", "no_answer_statement", "too_short", "unchanged") for o, _ in items)}),
               "dropped": {r: dropped.get(r, 0) for r in REASONS},
               "sample_outcomes": dict(Counter(outcomes)),
               "truncated_samples": sum(s.finish_reason == "length" for _, _, s in flat),
               "min_length_ratio": min_length_ratio,
               "length_ratio_hist": {"edges": list(RATIO_EDGES),
                                     "counts": {o: ratio_histogram(r) for o, r in sorted(ratios.items())}},
               "dropped_examples": examples,
               "tag": TAG, "template": template_id(template), "model": info.get("model")}
    return records, metrics


def _shorten(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit - 1] + "…"
