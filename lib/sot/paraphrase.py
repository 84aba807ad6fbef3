"""Stage paraphrase: an LM rewrites each human trace (H) in its own words; what still grades correct is P.

Steps: fill the prompt template ({question}, {solution}) for every H record, generate with a sot.llm
backend (chat messages), extract the trace from the reply, grade every extracted paraphrase with the task
and drop those that no longer grade correct. With sampling.n > 1 the first sample (in sample order) that
is extracted and grades correct is kept.

Extraction, not scraping: the prompt asks for the trace between <rewritten> and </rewritten> (a tag that
no task uses; Countdown's own answers are in <answer> tags, which stay inside the trace) and shows the
format in one line, short enough for the 0.5B instruct teacher to follow. Only what is inside the LAST
complete pair is kept, verbatim except for the whitespace next to the tags; whatever a model writes around
it (a "Here is the rewritten solution:" line, a "## Rewritten Solution" heading, an echoed "Problem: ...
Solution:" block, a closing "Note: ...") is never part of P. A reply without a complete pair is dropped,
and every drop is counted with its reason (REASONS).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Sequence

from sot.io import DataError

TAG = "rewritten"
DEFAULT_TEMPLATE = """Rewrite the solution below in your own words. Keep every step, every intermediate result \
and the final answer, in the same format as the original (for example a last line "#### 72", \\boxed{...}, \
<answer>...</answer>, or the Python code block with the same function).

Problem:
{question}

Solution:
{solution}

Reply with your rewritten solution between <rewritten> and </rewritten>, like this:
<rewritten>your rewritten solution</rewritten>"""

# Why an output is not used, in the order extraction and grading find them.
REASONS = ("no_tags", "unclosed", "empty", "unparseable", "wrong_answer")
_PLACEHOLDER = re.compile(r"\{(question|solution)\}")


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
    content = text[starts[-1].end():ends[-1].start()].strip()
    return (content, None) if content else (None, "empty")


def template_id(template: str) -> str:
    return hashlib.sha256(template.encode()).hexdigest()[:16]


def _outcome(text: str | None, reason: str | None, grade) -> str:
    if text is None:
        return reason
    if grade.correct:
        return "correct"
    return "unparseable" if grade.extracted is None else "wrong_answer"


def paraphrase(h_records: Sequence[dict], problems, task, backend, sampling, template: str = DEFAULT_TEMPLATE,
               workers: int | None = None, progress: bool = True) -> tuple[list[dict], dict]:
    """P records (category "P", in H order, only those extracted and graded correct) and metrics.

    h_records: H set records {id, completion, ...}; problems: Problems (list or id->Problem);
    backend: sot.llm backend; sampling: sot.llm.Sampling; template: str with {question} and {solution}.
    Metrics: requested, kept, keep_rate, dropped {reason: traces} (a dropped trace counts once, under the
    reason of its sample that got furthest: wrong_answer > unparseable > empty > unclosed > no_tags),
    sample_outcomes {correct | reason: samples}, truncated_samples (finish_reason "length")."""
    by_id = problems if isinstance(problems, dict) else {p.id: p for p in problems}
    for i, rec in enumerate(h_records):
        if rec.get("id") not in by_id:
            raise DataError(f"H record {i}: id {rec.get('id')!r} is not among the problems")
    fill_template(template, "", "")  # fail on a bad template before any generation
    probs = [by_id[r["id"]] for r in h_records]
    requests = [[{"role": "user", "content": fill_template(template, p.question, r["completion"])}]
                for p, r in zip(probs, h_records)]
    outputs = backend.generate(requests, sampling, progress=progress) if requests else []
    flat = [(i, j, s) for i, samples in enumerate(outputs) for j, s in enumerate(samples)]
    extracted = [extract_tagged(s.text) for _, _, s in flat]
    todo = [k for k, (text, _) in enumerate(extracted) if text is not None]
    graded = dict(zip(todo, task.grade_many([probs[flat[k][0]] for k in todo], [extracted[k][0] for k in todo],
                                            workers=workers)))
    info = backend.info() if hasattr(backend, "info") else {}
    chosen, outcomes, per_trace = {}, [], {}
    for k, (i, j, s) in enumerate(flat):
        text, reason = extracted[k]
        outcome = _outcome(text, reason, graded.get(k))
        outcomes.append(outcome)
        per_trace.setdefault(i, []).append(outcome)
        if outcome == "correct" and i not in chosen:
            chosen[i] = (j, s, text, graded[k])
    records = []
    for i, rec in enumerate(h_records):
        if i not in chosen:
            continue
        j, s, text, g = chosen[i]
        source = {"base": "H", "model": info.get("model"), "backend": info.get("backend"), "sample": j,
                  "n_tokens": s.n_tokens, "finish_reason": s.finish_reason, "template": template_id(template),
                  "extracted": g.extracted, "tag": TAG,
                  "truncated": False}   # the trace is a whole tag pair even if the reply ran on after it
        records.append({"id": rec["id"], "task": probs[i].task, "category": "P", "prompt": probs[i].question,
                        "completion": text, "source": source})
    n = len(h_records)
    rank = {r: k for k, r in enumerate(REASONS)}
    dropped = Counter(max(per_trace.get(i, ["no_tags"]), key=lambda r: rank.get(r, -1))
                      for i in range(n) if i not in chosen)
    metrics = {"requested": n, "samples_per_trace": getattr(sampling, "n", 1), "kept": len(records),
               "keep_rate": len(records) / n if n else None,
               "dropped": {r: dropped.get(r, 0) for r in REASONS},
               "sample_outcomes": dict(Counter(outcomes)),
               "truncated_samples": sum(s.finish_reason == "length" for _, _, s in flat),
               "tag": TAG, "template": template_id(template), "model": info.get("model")}
    return records, metrics
