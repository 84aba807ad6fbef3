"""Greedy evaluation of a student on test problems, and the paired comparisons of one (task, student) panel.

`evaluate` renders each problem's prompt in a style ("chat": the task's messages, rendered by the
backend with the model's chat template; "plain": task.prompt(problem, "plain") with task.stop as stop
strings), generates one greedy completion per problem with any sot.llm backend (transformers, vllm,
openai: the results have the same format whichever), grades each completion twice, with task.grade_many
(strict, our rules) and task.grade_authors_many (the paper authors' rule and denominator), and returns

- rows: one dict per problem, in problem order, with exactly ROW_FIELDS:
  {"id", "completion", "extracted", "correct", "authors_extracted", "authors_correct", "n_tokens",
  "finish_reason"};
- summary: sot.metrics.summarize() (strict and authors' accuracy with Wilson intervals, n_parsed, counts) plus
  "task", "style", "sampling", "generation" (seconds, tokens, tokens_per_s, problems_per_s, n_truncated),
  "grading_seconds", "backend" (backend.info()) and, when n_boot > 0, "bootstrap" (percentile-bootstrap
  intervals with n_boot and seed: an optional extra that no table or figure uses).

A stage writes rows with sot.io.write_jsonl and the summary with sot.io.write_json. For the figures,
`check_rows` validates stored rows (booleans, the authors' fields present: errors name the file and line),
`summarize_rows` recomputes a set's accuracy from them, and `panel` makes every test of one (task, student):
each set against the reference H, each F<pct> against F0 and the trend over pct, Holm-adjusted together
(sot.metrics has the methods and why). `accuracy_record` / `trend_record` flatten them into the rows of the
`accuracy` and `trend` DataFrames that sot.plots expects.
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from sot.io import DataError
from sot.metrics import accuracy_summary, bootstrap_ci, holm, paired_comparison, summarize, trend_test

ROW_FIELDS = ("id", "completion", "extracted", "correct", "authors_extracted", "authors_correct", "n_tokens",
              "finish_reason")
STYLES = ("chat", "plain", "authors", "authors-4shot")
F_SET = re.compile(r"^F(\d+)$")


def build_prompts(task, problems: Sequence, style: str) -> tuple[list, tuple[str, ...]]:
    """(prompts, stop strings) for a style: chat -> message lists and no stop; plain -> strings + task.stop;
    authors styles -> the authors' prompts and stop strings of the task (sot.authors_style)."""
    if style == "chat":
        return [task.messages(p) for p in problems], ()
    if style == "plain":
        return [task.prompt(p, "plain") for p in problems], tuple(task.stop)
    if style in STYLES:
        from sot.prompts import stop_strings
        return [task.prompt(p, style) for p in problems], stop_strings(style, task.name)
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
        from sot.progress import tqdm
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
             batch_size: int | None = None, grade_workers: int | None = None, n_boot: int = 0,
             level: float = 0.95, seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    """Greedy (temperature 0, n=1) generation + strict and authors' grading of `problems`; returns (rows, summary).

    batch_size: prompts per backend.generate call (None: all in one call; the backend batches itself).
    grade_workers: passed to task.grade_many / grade_authors_many (MBPP sandbox processes; None = all cores).
    level: the Wilson intervals of the summary. n_boot > 0 adds the optional percentile-bootstrap intervals
    (n_boot resamples, seeded with `seed`) under summary["bootstrap"].
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
    authors = task.grade_authors_many(list(problems), completions, workers=grade_workers)
    grading_seconds = time.perf_counter() - start
    for what, got in (("grade_many", grades), ("grade_authors_many", authors)):
        if len(got) != len(problems):
            raise RuntimeError(f"{type(task).__name__}.{what} returned {len(got)} grades for {len(problems)} problems")

    rows = [{"id": p.id, "completion": s.text, "extracted": g.extracted, "correct": bool(g.correct),
             "authors_extracted": a.extracted, "authors_correct": bool(a.correct),
             "n_tokens": int(s.n_tokens), "finish_reason": s.finish_reason}
            for p, s, g, a in zip(problems, samples, grades, authors)]
    tokens = sum(r["n_tokens"] for r in rows)
    summary = {
        "task": getattr(task, "name", None) or problems[0].task,
        "style": style,
        **summarize(grades, authors, level=level),
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
    if n_boot > 0:
        summary["bootstrap"] = bootstrap_extra(rows, n_boot=n_boot, level=level, seed=seed)
    return rows, summary


def bootstrap_extra(rows: Sequence[Mapping], n_boot: int, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile-bootstrap intervals of strict and authors' accuracy (optional extra; never in the table)."""
    kept = [r["authors_correct"] for r in rows if r["authors_extracted"] is not None]
    return {"method": "percentile bootstrap over problems (under-covers at small n; the table uses Wilson)",
            "n_boot": n_boot, "seed": seed, "level": level,
            "strict": list(bootstrap_ci([r["correct"] for r in rows], n_boot=n_boot, level=level, seed=seed)),
            "authors": list(bootstrap_ci(kept, n_boot=n_boot, level=level, seed=seed)) if kept else None}


def check_rows(rows: Sequence[Mapping], source: str, lines: Sequence[int] | None = None) -> list[Mapping]:
    """Validate stored evaluate rows before any statistics: DataError naming `source`, the line and the field.

    Every row needs a unique "id", boolean "correct" and "authors_correct" (JSON true / false: the string
    "False" is an error, never cast) and "authors_extracted" (a string, or null when the authors' scripts
    leave the problem out). lines: the file's line number of each row (default: 1, 2, ...).
    """
    lines = list(lines) if lines is not None else list(range(1, len(rows) + 1))
    seen: dict = {}
    for line, row in zip(lines, rows):
        where = f"{source}:{line}"
        for field in ("authors_correct", "authors_extracted"):
            if field not in row:
                raise DataError(f"{where}: no field {field!r} (rows written before the authors' grading was "
                                "stored); rerun `dvc repro evaluate`")
        for field in ("id", "correct"):
            if field not in row:
                raise DataError(f"{where}: missing field {field!r} (rows must have {', '.join(ROW_FIELDS)})")
        for field in ("correct", "authors_correct"):
            if not isinstance(row[field], bool):
                raise DataError(f"{where}: field {field!r} is {row[field]!r} ({type(row[field]).__name__}); "
                                "expected true or false; rerun `dvc repro evaluate` or fix that line")
        if row["authors_extracted"] is not None and not isinstance(row["authors_extracted"], str):
            raise DataError(f"{where}: field 'authors_extracted' is {row['authors_extracted']!r}; expected a "
                            "string or null")
        if row["id"] in seen:
            raise DataError(f"{where}: duplicate problem id {row['id']!r} (first at line {seen[row['id']]})")
        seen[row["id"]] = line
    return list(rows)


def summarize_rows(rows: Sequence[Mapping], level: float = 0.95) -> dict:
    """sot.metrics.accuracy_summary of checked rows (strict from "correct", authors' from the authors_* fields)."""
    return accuracy_summary([r["correct"] for r in rows], [r["authors_correct"] for r in rows],
                            [r["authors_extracted"] is not None for r in rows], level)


def compare(rows_b: Sequence[Mapping], rows_a: Sequence[Mapping], name_b: str, name_a: str,
            level: float = 0.95) -> dict:
    """paired_comparison of set b against set a aligned by problem id (in a's row order), or {"reason": ...}
    when the two were evaluated on different problems."""
    a = {r["id"]: r["correct"] for r in rows_a}
    b = {r["id"]: r["correct"] for r in rows_b}
    if set(a) != set(b):
        missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        return {"reason": f"{name_b} and {name_a} were evaluated on different problems: {len(missing)} of "
                          f"{name_a}'s ids missing (e.g. {missing[:2]}), {len(extra)} extra (e.g. {extra[:2]}); "
                          "evaluate both on the same test split and limit"}
    return paired_comparison([a[i] for i in a], [b[i] for i in a], level=level)


def compare_to_reference(rows_by_set: Mapping[str, Sequence[Mapping]], reference: str = "H",
                         level: float = 0.95) -> dict[str, dict]:
    """compare() of every other set against `reference`: {set: comparison or {"reason": ...}}."""
    if reference not in rows_by_set:
        return {s: {"reason": f"reference set {reference} was not evaluated"} for s in rows_by_set}
    return {s: compare(rows, rows_by_set[reference], s, reference, level)
            for s, rows in rows_by_set.items() if s != reference}


def tolerance_trend(rows_by_set: Mapping[str, Sequence[Mapping]], f0: str, n_perm: int, seed: int) -> dict:
    """trend_test over f0 (0 %) and every evaluated F<pct>, pct > 0, on f0's problems; {"reason"} if < 2 levels.

    A set evaluated on other problems than f0 is left out; "excluded" says which and why.
    """
    pcts = sorted((int(m[1]), s) for s in rows_by_set if (m := F_SET.match(s)) and int(m[1]) > 0)
    if f0 not in rows_by_set:
        return {"reason": f"the 0 % set {f0} was not evaluated", "f0": f0}
    base = {r["id"]: r["correct"] for r in rows_by_set[f0]}
    levels, columns, excluded = [0], [[base[i] for i in base]], {}
    for pct, s in pcts:
        other = {r["id"]: r["correct"] for r in rows_by_set[s]}
        if set(other) != set(base):
            excluded[s] = f"evaluated on other problems than {f0}"
            continue
        levels.append(pct)
        columns.append([other[i] for i in base])
    if len(levels) < 2:
        return {"reason": f"no F<pct> set with pct > 0 on {f0}'s problems", "f0": f0, "excluded": excluded}
    out = trend_test(list(zip(*columns)), levels, n_perm=n_perm, seed=seed)
    return {**out, "f0": f0, "sets": [f0] + [s for _, s in pcts if s not in excluded], "excluded": excluded}


def panel(rows_by_set: Mapping[str, Sequence[Mapping]], reference: str = "H", f0: str = "F0",
          level: float = 0.95, n_perm: int = 2000, seed: int = 0) -> dict:
    """Every test of one (task, student) panel, with Holm-adjusted p-values ("p_holm") over all of them.

    rows_by_set: checked rows per evaluated set (may include "base"). f0: the set standing for 0 % flawed
    ("F0" when evaluated, else the set the mixtures were built from: F0 equals it). The family: each set vs
    `reference`, each F<pct> (pct > 0) vs f0 (the same comparisons when f0 is the reference: counted once),
    and the trend test. Returns {"vs_reference", "vs_f0": {set: comparison or {"reason"}}, "trend", "f0",
    "n_tests"}.
    """
    vs_ref = compare_to_reference(rows_by_set, reference, level)
    f_sets = [s for s in rows_by_set if (m := F_SET.match(s)) and int(m[1]) > 0]
    if f0 == reference:
        vs_f0 = {s: vs_ref[s] for s in f_sets}
    elif f0 not in rows_by_set:
        vs_f0 = {s: {"reason": f"the 0 % set {f0} was not evaluated"} for s in f_sets}
    else:
        vs_f0 = {s: compare(rows_by_set[s], rows_by_set[f0], s, f0, level) for s in f_sets}
    trend = tolerance_trend(rows_by_set, f0, n_perm, seed) if f_sets else {"reason": "no F<pct> set", "f0": f0}
    family = [c for c in vs_ref.values() if "reason" not in c]
    family += [c for c in vs_f0.values() if "reason" not in c and not any(c is d for d in family)]
    tests = [(c, c["mcnemar_p"]) for c in family] + ([(trend, trend["p"])] if "reason" not in trend else [])
    for (test, _), adjusted in zip(tests, holm([p for _, p in tests])):
        test["p_holm"] = adjusted
    return {"vs_reference": vs_ref, "vs_f0": vs_f0, "trend": trend, "f0": f0, "n_tests": len(tests)}


def _comparison_fields(prefix: str, c: Mapping | None) -> dict:
    """delta_vs_<prefix>, delta_<prefix>_lo/_hi, p_vs_<prefix>(_holm) of a comparison; None where not made,
    with the reason in note_vs_<prefix>."""
    c = c or {}
    ok = bool(c) and "reason" not in c
    fields = {f"delta_vs_{prefix}": "diff", f"delta_{prefix}_lo": "diff_lo", f"delta_{prefix}_hi": "diff_hi",
              f"p_vs_{prefix}": "mcnemar_p", f"p_vs_{prefix}_holm": "p_holm"}
    return {**{k: c.get(v) if ok else None for k, v in fields.items()}, f"note_vs_{prefix}": c.get("reason")}


def accuracy_record(task: str, student: str, set_name: str, summary: Mapping, vs_reference: Mapping | None = None,
                    vs_f0: Mapping | None = None, f0: str | None = None) -> dict:
    """One row of the `accuracy` DataFrame of sot.plots: a set's accuracy + its comparisons (None: not made)."""
    keys = ("n", "strict", "strict_lo", "strict_hi", "n_parsed", "authors", "authors_lo", "authors_hi")
    return {"task": task, "student": student, "set": set_name, **{k: summary[k] for k in keys},
            **_comparison_fields("H", vs_reference), "F0": f0 if vs_f0 is not None else None,
            **_comparison_fields("F0", vs_f0)}


def trend_record(task: str, student: str, trend: Mapping) -> dict:
    """One row of the `trend` DataFrame of sot.plots (the tolerance trend test of one panel)."""
    keys = ("f0", "n", "slope", "z", "p_asymptotic", "p", "p_holm", "n_perm", "seed")
    rec = {"task": task, "student": student, **{k: trend.get(k) for k in keys}, "note": trend.get("reason")}
    rec["levels"] = ",".join(f"{int(v)}" for v in trend.get("levels", []))
    rec["excluded"] = "; ".join(f"{s}: {why}" for s, why in trend.get("excluded", {}).items()) or None
    return rec
