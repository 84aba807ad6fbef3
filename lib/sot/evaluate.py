"""Greedy evaluation of a student on test problems, and paired comparisons of training sets against H.

`evaluate` renders each problem's prompt in a style ("chat": the task's messages, rendered by the
backend with the model's chat template; "plain": task.prompt(problem, "plain") with task.stop as stop
strings), generates one greedy completion per problem with any sot.llm backend (transformers, vllm,
openai: the results have the same format whichever), grades them with task.grade_many, and returns

- rows: one dict per problem, in problem order, with exactly ROW_FIELDS:
  {"id", "completion", "extracted", "correct", "n_tokens", "finish_reason"};
- summary: sot.metrics.summarize() (strict/authors accuracy with bootstrap intervals, counts) plus
  "task", "style", "sampling", "generation" (seconds, tokens, tokens_per_s, problems_per_s, n_truncated),
  "grading_seconds" and "backend" (backend.info()).

A stage writes rows with sot.io.write_jsonl and the summary with sot.io.write_json; `compare_to_reference`
takes the stored rows of every set of one task/student and compares each against H on the same problem
ids; `accuracy_record` flattens one set's summary (+ its comparison) into a row of the `accuracy`
DataFrame that sot.plots expects.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from sot.metrics import paired_comparison, summarize

ROW_FIELDS = ("id", "completion", "extracted", "correct", "n_tokens", "finish_reason")
STYLES = ("chat", "plain")


def build_prompts(task, problems: Sequence, style: str) -> tuple[list, tuple[str, ...]]:
    """(prompts, stop strings) for a style: chat -> message lists and no stop; plain -> strings + task.stop."""
    if style == "chat":
        return [task.messages(p) for p in problems], ()
    if style == "plain":
        return [task.prompt(p, "plain") for p in problems], tuple(task.stop)
    raise ValueError(f"unknown prompt style {style!r}; use one of {STYLES}")


def _check_problems(problems: Sequence) -> None:
    if not problems:
        raise ValueError("evaluate: no test problems given (empty split or limit=0?)")
    seen: set[str] = set()
    for i, p in enumerate(problems):
        if p.id in seen:
            raise ValueError(f"evaluate: problem #{i} has duplicate id {p.id!r}; ids must be unique")
        seen.add(p.id)


def _generate(backend, prompts: list, sampling, batch_size: int | None, progress: bool) -> list:
    """First sample of each prompt, calling backend.generate on chunks of batch_size prompts (None: one call)."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    if batch_size is None or batch_size >= len(prompts):
        chunks = [prompts]
    else:
        chunks = [prompts[i:i + batch_size] for i in range(0, len(prompts), batch_size)]
    bar = None
    if progress and len(chunks) > 1:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(prompts), desc="evaluate", unit="problem")
    samples, tokens, start = [], 0, time.perf_counter()
    try:
        for chunk in chunks:
            out = backend.generate(chunk, sampling, progress=progress and bar is None)
            if len(out) != len(chunk):
                raise RuntimeError(f"backend {type(backend).__name__}.generate returned {len(out)} results "
                                   f"for {len(chunk)} prompts")
            for i, per_prompt in enumerate(out):
                if not per_prompt:
                    raise RuntimeError(f"backend {type(backend).__name__} returned no sample for prompt "
                                       f"#{len(samples) + i}")
            samples.extend(per_prompt[0] for per_prompt in out)
            if bar is not None:
                tokens += sum(s[0].n_tokens for s in out)
                bar.update(len(chunk))
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.0f}")
    finally:
        if bar is not None:
            bar.close()
    return samples


def evaluate(task, problems: Sequence, backend, style: str = "chat", max_new_tokens: int = 512,
             batch_size: int | None = None, grade_workers: int | None = None, n_boot: int = 10000,
             level: float = 0.95, seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    """Greedy (temperature 0, n=1) generation + grading of `problems`; returns (rows, summary).

    batch_size: prompts per backend.generate call (None: all in one call; the backend batches itself).
    grade_workers: passed to task.grade_many (MBPP sandbox processes; None = all cores).
    n_boot, level, seed: the bootstrap intervals of the summary.
    """
    from sot.llm import Sampling

    _check_problems(problems)
    prompts, stop = build_prompts(task, problems, style)
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed, stop=stop)

    start = time.perf_counter()
    samples = _generate(backend, prompts, sampling, batch_size, progress)
    gen_seconds = time.perf_counter() - start

    start = time.perf_counter()
    completions = [s.text for s in samples]
    grades = task.grade_many(list(problems), completions, workers=grade_workers)
    grading_seconds = time.perf_counter() - start
    if len(grades) != len(problems):
        raise RuntimeError(f"{type(task).__name__}.grade_many returned {len(grades)} grades for "
                           f"{len(problems)} problems")

    rows = [{"id": p.id, "completion": s.text, "extracted": g.extracted, "correct": bool(g.correct),
             "n_tokens": int(s.n_tokens), "finish_reason": s.finish_reason}
            for p, s, g in zip(problems, samples, grades)]
    tokens = sum(r["n_tokens"] for r in rows)
    summary = {
        "task": getattr(task, "name", None) or problems[0].task,
        "style": style,
        **summarize(grades, n_boot=n_boot, level=level, seed=seed),
        "sampling": {**asdict(sampling), "stop": list(sampling.stop)},
        "generation": {
            "seconds": gen_seconds,
            "tokens": tokens,
            "tokens_per_s": tokens / gen_seconds if gen_seconds > 0 else None,
            "problems_per_s": len(rows) / gen_seconds if gen_seconds > 0 else None,
            "n_truncated": sum(r["finish_reason"] == "length" for r in rows),
        },
        "grading_seconds": grading_seconds,
        "backend": backend.info(),
    }
    return rows, summary


def _index_rows(rows: Sequence[Mapping], set_name: str) -> dict[str, bool]:
    by_id: dict[str, bool] = {}
    for i, row in enumerate(rows):
        for field in ("id", "correct"):
            if field not in row:
                raise ValueError(f"set {set_name!r}, row #{i}: missing field {field!r} "
                                 f"(rows must have {', '.join(ROW_FIELDS)})")
        if row["id"] in by_id:
            raise ValueError(f"set {set_name!r}, row #{i}: duplicate problem id {row['id']!r}")
        by_id[row["id"]] = bool(row["correct"])
    return by_id


def compare_to_reference(rows_by_set: Mapping[str, Sequence[Mapping]], reference: str = "H",
                         n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """Paired comparison (sot.metrics.paired_comparison, a = reference, b = set) of every other set.

    All sets must cover the same problem ids (else ValueError naming the set and the differing ids);
    problems are aligned by id, in the reference's row order. Returns {set name: comparison dict}; the reference itself is left out.
    """
    if reference not in rows_by_set:
        raise ValueError(f"reference set {reference!r} not among the sets {sorted(rows_by_set)}")
    ref = _index_rows(rows_by_set[reference], reference)
    ids = list(ref)  # the reference's row order
    out = {}
    for name, rows in rows_by_set.items():
        if name == reference:
            continue
        other = _index_rows(rows, name)
        if set(other) != set(ref):
            missing = sorted(set(ref) - set(other))
            extra = sorted(set(other) - set(ref))
            raise ValueError(f"set {name!r} and reference {reference!r} were evaluated on different problems: "
                             f"{len(missing)} ids missing (e.g. {missing[:3]}), {len(extra)} extra "
                             f"(e.g. {extra[:3]}); evaluate both on the same test split and limit")
        out[name] = paired_comparison([ref[i] for i in ids], [other[i] for i in ids],
                                      n_boot=n_boot, level=level, seed=seed)
    return out


def accuracy_record(task: str, student: str, set_name: str, summary: Mapping,
                    comparison: Mapping | None = None) -> dict:
    """One row of the `accuracy` DataFrame of sot.plots from an evaluate() summary (+ its comparison to H)."""
    return {
        "task": task, "student": student, "set": set_name,
        "strict": summary["strict"], "strict_lo": summary["strict_lo"], "strict_hi": summary["strict_hi"],
        "authors": summary["authors"], "authors_lo": summary.get("authors_lo"),
        "authors_hi": summary.get("authors_hi"), "n": summary["n"], "n_parsed": summary["n_parsed"],
        "delta_vs_H": comparison["diff"] if comparison else None,
        "delta_lo": comparison["diff_lo"] if comparison else None,
        "delta_hi": comparison["diff_hi"] if comparison else None,
        "p_vs_H": comparison["mcnemar_p"] if comparison else None,
    }
