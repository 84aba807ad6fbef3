"""Stage paraphrase: an LM rewrites each human trace (H) in its own words; what still grades correct is P.

Steps: fill the prompt template ({question}, {solution}) for every H record, generate with a sot.llm
backend (chat messages), strip wrappers ("Here is the rewritten solution:", a fence around a whole
math answer, "Let me know if ..."), grade every paraphrase with the task and drop those that no longer
grade correct. With sampling.n > 1 the first sample (in sample order) that grades correct is kept.
"""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

from sot.io import DataError

DEFAULT_TEMPLATE = """Rewrite the solution below in your own words, the way you would naturally write it yourself.
Keep every step of the reasoning and every intermediate result. Keep the final answer exactly as it is and in \
the same format: for example a last line "#### 72", a \\boxed{...} answer, an <answer>...</answer> tag, or the \
Python code block (same function name and arguments, same behaviour).
Reply with the rewritten solution only, with no introduction and no comment.

Problem:
{question}

Solution:
{solution}"""

_PLACEHOLDER = re.compile(r"\{(question|solution)\}")
_PREAMBLE = re.compile(
    r"\A\s*(?:\*\*|#+\s*)?(?:(?:sure|certainly|okay|ok|of course|absolutely)\b[^\n]{0,40}?[.!,]?\s*)?"
    r"(?:(?:here(?:'s| is| are)|below is)[^\n]{0,80}|(?:the\s+)?(?:rewritten|paraphrased|revised|new)\s+"
    r"(?:solution|version|answer)[^\n]{0,40}|solution)\s*:\s*(?:\*\*)?\s*\n", re.I)
_CLOSING = re.compile(r"\n\s*(?:let me know|i hope|hope this helps|feel free|is there anything)[^\n]*\s*\Z", re.I)
_WHOLE_FENCE = re.compile(r"\A```[A-Za-z]*\n(.*?)\n```\Z", re.S)


def fill_template(template: str, question: str, solution: str) -> str:
    """The template with {question} and {solution} substituted (other braces, e.g. \\boxed{...}, kept)."""
    missing = [p for p in ("{question}", "{solution}") if p not in template]
    if missing:
        raise ValueError(f"prompt template lacks the placeholder {missing[0]}; it needs both "
                         "{question} and {solution} (params.yaml, paraphrase/corrupt template)")
    return _PLACEHOLDER.sub(lambda m: question if m.group(1) == "question" else solution, template)


def clean_output(text: str, task_name: str) -> str:
    """Strip an LM's wrappers around a rewritten trace; MBPP keeps its code fences."""
    out = text.strip()
    for _ in range(2):
        out = _PREAMBLE.sub("", out, count=1).strip()
    out = _CLOSING.sub("", out).strip()
    fenced = _WHOLE_FENCE.match(out)
    if fenced and task_name != "mbpp":
        out = fenced.group(1).strip()
    return out


def template_id(template: str) -> str:
    return hashlib.sha256(template.encode()).hexdigest()[:16]


def paraphrase(h_records: Sequence[dict], problems, task, backend, sampling, template: str = DEFAULT_TEMPLATE,
               workers: int | None = None, progress: bool = True) -> tuple[list[dict], dict]:
    """P records (category "P", in H order, only those that grade correct) and metrics.

    h_records: H set records {id, completion, ...}; problems: Problems (list or id->Problem);
    backend: sot.llm backend; sampling: sot.llm.Sampling; template: str with {question} and {solution}."""
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
    texts = [clean_output(s.text, task.name) for _, _, s in flat]
    grades = task.grade_many([probs[i] for i, _, _ in flat], texts, workers=workers)
    info = backend.info() if hasattr(backend, "info") else {}
    chosen, seen_parsed, truncated = {}, set(), 0
    for (i, j, s), text, g in zip(flat, texts, grades):
        truncated += s.finish_reason == "length"
        if g.extracted is not None and text:
            seen_parsed.add(i)
        if g.correct and text and i not in chosen:
            chosen[i] = (j, s, text, g)
    records = []
    for i, rec in enumerate(h_records):
        if i not in chosen:
            continue
        j, s, text, g = chosen[i]
        source = {"base": "H", "model": info.get("model"), "backend": info.get("backend"), "sample": j,
                  "n_tokens": s.n_tokens, "finish_reason": s.finish_reason, "template": template_id(template),
                  "extracted": g.extracted}
        records.append({"id": rec["id"], "task": probs[i].task, "category": "P", "prompt": probs[i].question,
                        "completion": text, "source": source})
    n = len(h_records)
    dropped = [i for i in range(n) if i not in chosen]
    metrics = {"requested": n, "samples_per_trace": getattr(sampling, "n", 1), "kept": len(records),
               "dropped_wrong": sum(i in seen_parsed for i in dropped),
               "dropped_unparseable": sum(i not in seen_parsed for i in dropped),
               "keep_rate": len(records) / n if n else None, "truncated_samples": truncated,
               "template": template_id(template), "model": info.get("model")}
    return records, metrics
