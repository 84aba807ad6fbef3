"""Stage classify: grade the teacher samples and keep one correct (G) and one wrong (W) trace per problem.

Selection rule (seeded, documented, reproducible):
- every sample is graded with the task's grader (`task.grade_many`);
- among the correct samples of a problem, G is the one with the smallest key
  sha256(f"{seed}:{problem id}:{sample index}"); W likewise among its wrong samples. The choice depends
  only on (seed, id, sample index) (a record without `sample` uses a hash of its text): it is stable
  under any reordering of the input and independent of the other problems;
- `w_policy="parsed"` (default): a W trace must have a final answer that grades wrong (Grade.extracted is
  not None): the paper's wrong-answer traces. Unparseable outputs (truncated, no answer) are not W.
  `w_policy="any"`: any sample that does not grade correct may be W;
- `truncated="drop"` (default): a sample cut by the length limit (finish_reason "length") is never G or W,
  whatever it grades: it did not end, so as G or W it would be trained as if it had (a GSM8K trace cut at
  "...Multiply that" still has a last number, so it would grade and count as wrong), and W would differ from
  G in being unfinished. `truncated="keep"`: such samples are eligible (they are then trained and scored
  without an end token, sot.sft.data.is_truncated). The policy is in every record's source
  ("truncated_policy") and in the metrics, with how many truncated samples each pool lost;
- `balanced=True` (default): H, G and W are restricted to the same problems, those with both a G and a W,
  as the paper compares them; `balanced=False`: H on every problem, G/W wherever one exists.
Records follow the spec: {id, task, category, prompt: problem.question, completion, source}; a G/W source
holds the sample's n_tokens, finish_reason, "truncated" (bool), sample index and extracted answer.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Callable, Sequence

from sot.io import DataError

W_POLICIES = ("parsed", "any")
TRUNCATED_POLICIES = ("drop", "keep")
PASS_RATE_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def seeded_key(seed: int, *parts) -> str:
    """Order key that depends only on (seed, parts): sha256 hex of 'seed:part:part...'."""
    return hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).hexdigest()


def _problem_map(problems) -> dict:
    by_id = problems if isinstance(problems, dict) else {p.id: p for p in problems}
    if not isinstance(problems, dict) and len(by_id) != len(problems):
        raise DataError("problems: duplicate problem ids; each problem must appear once")
    return by_id


def grade_samples(samples: Sequence[dict], problems, task, workers: int | None = None) -> list[dict]:
    """Each sample record with `correct` and `extracted` added, graded by `task.grade_many`.

    Fails before grading on a sample without `id`/`completion` or with an id not among the problems."""
    by_id = _problem_map(problems)
    for i, s in enumerate(samples):
        for field in ("id", "completion"):
            if field not in s:
                raise DataError(f"samples[{i}]: missing field {field!r}; expected the generate stage's records")
        if s["id"] not in by_id:
            raise DataError(f"samples[{i}] (sample {s.get('sample')}): id {s['id']!r} is not among the "
                            f"{len(by_id)} problems; were samples and problems made from the same split?")
    grades = task.grade_many([by_id[s["id"]] for s in samples], [s["completion"] for s in samples],
                             workers=workers)
    return [{**s, "correct": g.correct, "extracted": g.extracted} for s, g in zip(samples, grades)]


def _record(problem, category: str, completion: str, source: dict) -> dict:
    return {"id": problem.id, "task": problem.task, "category": category, "prompt": problem.question,
            "completion": completion, "source": source}


def is_truncated(sample: dict) -> bool:
    """Whether a generated sample was cut by the length limit (max_new_tokens) instead of ending."""
    return sample.get("finish_reason") == "length"


def _from_sample(problem, category: str, sample: dict, index, policy: str) -> dict:
    src = dict(sample.get("source") or {}) if isinstance(sample.get("source"), dict) else {}
    src.update({k: sample[k] for k in ("n_tokens", "finish_reason") if k in sample})
    src.update(sample=index, extracted=sample["extracted"], truncated=is_truncated(sample), truncated_policy=policy)
    return _record(problem, category, sample["completion"], src)


def pass_rate_histogram(rates: Sequence[float], edges: Sequence[float] = PASS_RATE_EDGES) -> dict:
    """Counts per bin [e_i, e_{i+1}) (last bin closed), plus problems at exactly 0 and exactly 1."""
    counts = [0] * (len(edges) - 1)
    for r in rates:
        i = next((k for k in range(len(edges) - 1) if r < edges[k + 1]), len(edges) - 2)
        counts[i] += 1
    return {"edges": list(edges), "counts": counts,
            "all_wrong": sum(r == 0 for r in rates), "all_correct": sum(r == 1 for r in rates)}


def _truncation_metrics(per_problem: dict, w_policy: str, policy: str, g_pick: dict, w_pick: dict) -> dict:
    """Truncated samples among the G and W candidates, and the problems that lost G or W to the policy."""
    samples = [x[2] for items in per_problem.values() for x in items]
    wrong_ok = (lambda s: w_policy == "any" or s["extracted"] is not None)
    g_pool = [s for s in samples if s["correct"]]
    w_pool = [s for s in samples if not s["correct"] and wrong_ok(s)]
    had_g = {pid for pid, items in per_problem.items() if any(x[2]["correct"] for x in items)}
    had_w = {pid for pid, items in per_problem.items() if any(not x[2]["correct"] and wrong_ok(x[2]) for x in items)}
    n = sum(map(is_truncated, samples))
    return {
        "policy": policy, "n_samples": n, "frac_samples": n / len(samples) if samples else None,
        "among_correct": sum(map(is_truncated, g_pool)), "among_wrong": sum(map(is_truncated, w_pool)),
        "excluded": ({"G": sum(map(is_truncated, g_pool)), "W": sum(map(is_truncated, w_pool))}
                     if policy == "drop" else {"G": 0, "W": 0}),
        "problems_lost_G": len(had_g - set(g_pick)), "problems_lost_W": len(had_w - set(w_pick)),
    }


def select_traces(graded: Sequence[dict], problems, seed: int = 0, w_policy: str = "parsed",
                  balanced: bool = True, truncated: str = "drop", *,
                  human_trace: Callable) -> tuple[dict[str, list[dict]], dict]:
    """Sets {"H", "G", "W"} (lists of records, in problem order) and metrics, from graded samples.
    human_trace(problem): the H completion, the reference in the form the prompt asks for (Task.human_trace)."""
    if w_policy not in W_POLICIES:
        raise ValueError(f"w_policy must be one of {W_POLICIES}, got {w_policy!r}")
    if truncated not in TRUNCATED_POLICIES:
        raise ValueError(f"classify.truncated must be one of {TRUNCATED_POLICIES}, got {truncated!r} (params.yaml)")
    by_id = _problem_map(problems)
    per_problem = defaultdict(list)
    for s in graded:
        index = s["sample"] if "sample" in s else "text-" + hashlib.sha256(s["completion"].encode()).hexdigest()[:12]
        per_problem[s["id"]].append((seeded_key(seed, s["id"], index), index, s))
    eligible = (lambda s: not is_truncated(s)) if truncated == "drop" else (lambda s: True)
    g_pick, w_pick = {}, {}
    for pid, items in per_problem.items():
        usable = [x for x in items if eligible(x[2])]
        correct = [x for x in usable if x[2]["correct"]]
        wrong = [x for x in usable if not x[2]["correct"]
                 and (w_policy == "any" or x[2]["extracted"] is not None)]
        if correct:
            g_pick[pid] = min(correct, key=lambda x: x[0])
        if wrong:
            w_pick[pid] = min(wrong, key=lambda x: x[0])
    both = set(g_pick) & set(w_pick)
    keep = (lambda pid: pid in both) if balanced else (lambda pid: True)
    order = list(by_id)
    human = {"kind": "human", "truncated": False, "truncated_policy": truncated}
    sets = {
        "H": [_record(by_id[pid], "H", human_trace(by_id[pid]), dict(human)) for pid in order if keep(pid)],
        "G": [_from_sample(by_id[pid], "G", g_pick[pid][2], g_pick[pid][1], truncated) for pid in order
              if pid in g_pick and keep(pid)],
        "W": [_from_sample(by_id[pid], "W", w_pick[pid][2], w_pick[pid][1], truncated) for pid in order
              if pid in w_pick and keep(pid)],
    }
    rates = [sum(x[2]["correct"] for x in per_problem[pid]) / len(per_problem[pid])
             for pid in order if per_problem.get(pid)]
    n_unparsed = sum(s["extracted"] is None for s in graded)
    metrics = {
        "seed": seed, "w_policy": w_policy, "balanced": balanced, "truncated_policy": truncated,
        "n_samples": len(graded), "n_problems": len(by_id),
        "n_problems_with_samples": len(rates),
        "n_correct_samples": sum(bool(s["correct"]) for s in graded),
        "frac_correct_samples": sum(bool(s["correct"]) for s in graded) / len(graded) if graded else None,
        "n_unparseable_samples": n_unparsed,
        "frac_unparseable_samples": n_unparsed / len(graded) if graded else None,
        "truncated": _truncation_metrics(per_problem, w_policy, truncated, g_pick, w_pick),
        "n_problems_with_G": len(g_pick), "n_problems_with_W": len(w_pick), "n_problems_with_both": len(both),
        "pass_rate_hist": pass_rate_histogram(rates),
        "sets": {name: {"size": len(recs),
                        "n_unparseable": sum(r["source"].get("extracted", "") is None for r in recs),
                        "n_truncated": sum(bool(r["source"].get("truncated")) for r in recs)}
                 for name, recs in sets.items()},
    }
    return sets, metrics


def classify(samples: Sequence[dict], problems, task, seed: int = 0, w_policy: str = "parsed",
             balanced: bool = True, workers: int | None = None,
             truncated: str = "drop") -> tuple[dict[str, list[dict]], dict]:
    """Grade the teacher samples, then select H/G/W (see the module docstring). Returns (sets, metrics)."""
    if truncated not in TRUNCATED_POLICIES:   # before grading (MBPP grading runs programs)
        raise ValueError(f"classify.truncated must be one of {TRUNCATED_POLICIES}, got {truncated!r} (params.yaml)")
    graded = grade_samples(samples, problems, task, workers=workers)
    return select_traces(graded, problems, seed=seed, w_policy=w_policy, balanced=balanced, truncated=truncated,
                         human_trace=task.human_trace)
