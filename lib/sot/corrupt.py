"""Stage corrupt: completely flawed traces, and the F<pct> mixtures of a base set (default G) with them.

Operators (registry OPERATORS: name -> function(problem, trace, rng) -> flawed trace | None):
- "perturb_steps" (programmatic, sot.perturb): keeps the trace's shape; every arithmetic step gets a wrong
  result that propagates into what follows, the final answer is made wrong; MBPP code is mutated
  (flipped comparisons, off-by-one ranges, negated returns ...) so that it fails its tests;
- "lm_rewrite" (LM-written; `lm_rewrite(backend, sampling, template)` builds it): an LM rewrites the trace
  with an error in every step and a wrong final answer, between <rewritten> tags; only the last complete tag
  pair is kept (sot.paraphrase.extract_tagged), a reply without one fails as no_output. Retries use sampling
  seed + attempt, so they only differ with temperature > 0. An operator with a `batch(problems, traces,
  attempt)` method gets whole batches; plain functions get one trace and an rng seeded by sha256(seed, id, attempt).
Every flawed trace is graded by the task and kept only when it grades wrong (and, with require_parsed, has
an answer). A trace that still grades correct (or comes back empty or unchanged) is retried with a new rng
draw up to max_tries, then reported as a failure with its reason: never kept.
Mixtures (`mix`): base ids are ordered once by sha256(seed, "mix", id) (a seeded permutation, stable under
input reordering); F<p> replaces the first round_half_up(p/100 * n) ids of that order that have a flawed
trace, so the flawed traces of F25 are in F50, ..., F100 (failed ids stay clean and are reported).
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from fractions import Fraction
from typing import Callable, Sequence

from sot.progress import tqdm

from sot.io import DataError
from sot.paraphrase import extract_tagged, fill_template, reply_text, rewrite_request
from sot.perturb import perturb_steps
from sot.selection import seeded_key
from sot.sft.data import is_truncated

DEFAULT_FRACTIONS = (0, 25, 50, 75, 100)
DEFAULT_FLAW_TEMPLATE = """Rewrite the solution below so that it looks the same (same length, style and format) \
but every step contains an error: wrong arithmetic, wrong intermediate results carried forward, wrong reasoning. \
The final answer must be wrong, in the same format as the original (for example "#### N", \\boxed{...}, \
<answer>...</answer>, or a Python code block that fails on the problem). Do not mention the errors.

Problem:
{question}

Solution:
{solution}

Reply with your rewritten solution between <rewritten> and </rewritten>, like this:
<rewritten>your rewritten solution</rewritten>"""


def _rng(seed: int, pid: str, attempt: int) -> random.Random:
    return random.Random(int(seeded_key(seed, pid, attempt)[:16], 16))


OPERATORS: dict[str, Callable] = {"perturb_steps": perturb_steps}


class lm_rewrite:  # noqa: N801  (used like a function: lm_rewrite(backend, sampling))
    """Operator "lm_rewrite": an LM rewrites each trace with errors in every step and a wrong answer.

    The reply is extracted like a paraphrase (sot.paraphrase.extract_tagged: the last complete
    <rewritten>...</rewritten> pair, nothing around it); a reply without one is None (corrupt_traces counts
    it as no_output) and its reason (no_tags, unclosed, empty) is counted in `extraction_failures` and, for
    the last batch, in `last_reasons` (aligned with that batch; None where a trace was extracted)."""
    name = "lm_rewrite"

    def __init__(self, backend, sampling, template: str = DEFAULT_FLAW_TEMPLATE, progress: bool = True):
        fill_template(template, "", "")
        self.backend, self.sampling, self.template, self.progress = backend, sampling, template, progress
        self.extraction_failures: Counter = Counter()
        self.last_reasons: list[str | None] = []

    def batch(self, problems: Sequence, traces: Sequence[str], attempt: int = 0) -> list[str | None]:
        from sot.tasks import get_task
        requests = [rewrite_request(get_task(p.task), p, t, self.template) for p, t in zip(problems, traces)]
        sampling = dataclasses.replace(self.sampling, seed=self.sampling.seed + attempt)
        outs = self.backend.generate(requests, sampling, progress=self.progress) if requests else []
        pairs = [extract_tagged(reply_text(o[0].text)) for o in outs]
        self.last_reasons = [reason for _, reason in pairs]
        self.extraction_failures.update(reason for reason in self.last_reasons if reason)
        return [text for text, _ in pairs]

    def __call__(self, problem, trace: str, rng: random.Random) -> str | None:
        return self.batch([problem], [trace], attempt=rng.randrange(1 << 20))[0]


def _operator(operator) -> tuple[str, Callable]:
    if isinstance(operator, str):
        if operator not in OPERATORS:
            raise ValueError(f"unknown corruption operator {operator!r}; registered: {', '.join(OPERATORS)} "
                             "(lm_rewrite needs a backend: pass sot.corrupt.lm_rewrite(backend, sampling))")
        return operator, OPERATORS[operator]
    return getattr(operator, "name", getattr(operator, "__name__", "custom")), operator


def corrupt_traces(base_records: Sequence[dict], problems, task, operator="perturb_steps", seed: int = 0,
                   max_tries: int = 3, require_parsed: bool = True, workers: int | None = None,
                   progress: bool = True) -> tuple[list[dict], dict]:
    """One flawed trace (category "F") per base trace where the operator manages one that grades wrong.

    Returns (flawed records in base order, metrics: n_flawed, n_failed, failed_ids, failure_reasons
    {no_output, unchanged, graded_correct, unparseable}, attempts {attempt: count})."""
    name, op = _operator(operator)
    by_id = problems if isinstance(problems, dict) else {p.id: p for p in problems}
    for i, rec in enumerate(base_records):
        if rec.get("id") not in by_id:
            raise DataError(f"base record {i}: id {rec.get('id')!r} is not among the problems")
    probs = [by_id[r["id"]] for r in base_records]
    done, reason, pending = {}, {}, list(range(len(base_records)))
    for attempt in range(max_tries):
        if not pending:
            break
        traces = [base_records[i]["completion"] for i in pending]
        if hasattr(op, "batch"):
            outs = op.batch([probs[i] for i in pending], traces, attempt=attempt)
        else:
            items = tqdm(list(zip(pending, traces)), desc=f"{name} try {attempt + 1}/{max_tries}", unit="trace",
                         disable=not progress)
            outs = [op(probs[i], t, _rng(seed, probs[i].id, attempt)) for i, t in items]
        todo = []
        for i, o in zip(pending, outs):
            if not o or not o.strip():
                reason[i] = "no_output"
            elif o == base_records[i]["completion"]:
                reason[i] = "unchanged"
            else:
                todo.append((i, o))
        grades = task.grade_many([probs[i] for i, _ in todo], [o for _, o in todo], workers=workers)
        for (i, o), g in zip(todo, grades):
            if not g.correct and (g.extracted is not None or not require_parsed):
                done[i] = (o, attempt, g.extracted)
            else:
                reason[i] = "graded_correct" if g.correct else "unparseable"
        pending = [i for i in pending if i not in done]
    flawed = []
    for i, rec in enumerate(base_records):
        if i in done:
            text, attempt, extracted = done[i]
            flawed.append({"id": rec["id"], "task": probs[i].task, "category": "F", "prompt": probs[i].question,
                           "completion": text, "source": {"operator": name, "attempt": attempt,
                                                          "extracted": extracted,
                                                          "base_category": rec.get("category"),
                                                          "base_source": rec.get("source")}})
    failed = [base_records[i]["id"] for i in pending]
    metrics = {"operator": name, "seed": seed, "max_tries": max_tries, "n_base": len(base_records),
               "n_flawed": len(flawed), "n_failed": len(failed), "failed_ids": failed,
               "failure_reasons": dict(Counter(reason[i] for i in pending)),
               "attempts": dict(Counter(r["source"]["attempt"] for r in flawed))}
    return flawed, metrics


def _round_half_up(x: float) -> int:
    return int(Fraction(x) + Fraction(1, 2))


def mix(base_records: Sequence[dict], flawed_records: Sequence[dict], fractions: Sequence[int] = DEFAULT_FRACTIONS,
        seed: int = 0) -> tuple[dict[str, list[dict]], dict]:
    """Sets {"F<p>": records in base order} with nested flawed subsets, and per-set metrics."""
    flawed = {r["id"]: r for r in flawed_records}
    order = sorted((r["id"] for r in base_records), key=lambda pid: seeded_key(seed, "mix", pid))
    n = len(base_records)
    sets, metrics = {}, {"seed": seed, "n_base": n, "sets": {}}
    for p in fractions:
        if not 0 <= p <= 100:
            raise ValueError(f"mixture fraction {p} is not a percentage in [0, 100]")
        k = _round_half_up(p * n / 100)
        chosen, skipped = set(), 0
        for pid in order:
            if len(chosen) == k:
                break
            if pid in flawed:
                chosen.add(pid)
            else:
                skipped += 1
        name = f"F{p}"
        records = []
        for r in base_records:
            # `truncated` travels to the top of the source (sft.data.is_truncated reads only that level): a base
            # trace cut by the length limit (classify.truncated: keep) and its flawed copy get no end token either.
            cut = is_truncated(r)
            if r["id"] in chosen:
                f = flawed[r["id"]]
                records.append({**f, "category": name, "source": {"flawed": True, **f["source"], "truncated": cut}})
            else:
                records.append({**r, "category": name, "source": {"flawed": False, "base_category": r.get("category"),
                                                                  "base_source": r.get("source"), "truncated": cut}})
        sets[name] = records
        metrics["sets"][name] = {"size": n, "n_flawed": len(chosen), "target_flawed": k,
                                 "shortfall": k - len(chosen), "skipped_failures": skipped,
                                 "operators": dict(Counter(flawed[i]["source"]["operator"] for i in chosen))}
    return sets, metrics


def make_mixtures(base_records: Sequence[dict], problems, task, fractions: Sequence[int] = DEFAULT_FRACTIONS,
                  operator="perturb_steps", seed: int = 0, max_tries: int = 3, require_parsed: bool = True,
                  workers: int | None = None, progress: bool = True) -> tuple[dict[str, list[dict]], list[dict], dict]:
    """corrupt_traces + mix: (F<p> sets, the flawed traces, metrics {"corrupt": ..., "mix": ...})."""
    flawed, m_corrupt = corrupt_traces(base_records, problems, task, operator, seed, max_tries,
                                       require_parsed, workers, progress)
    sets, m_mix = mix(base_records, flawed, fractions, seed)
    return sets, flawed, {"corrupt": m_corrupt, "mix": m_mix}
