"""How each set was trained and decoded: the table that shows the sets were trained alike and evaluated whole.

Per (task, student, set), from metrics/sft/<task>-<student>/<set>.json and metrics/evaluate/.../<set>.json:
optimizer steps, loss-bearing (completion + end) tokens trained on, passes over the set, the summed learning
rate, the learning rate of the first step, the longest completion trained on, the outputs cut at the decoding
cap (count and share) and the share of the adapter's effect the evaluated model keeps (sot.fidelity).

The rule the sets are held to (`alike`): under `budget: tokens` every set's completion tokens are within one
optimizer step's worth of the budget; under `steps` every set runs the same steps. Steps and summed learning
rate then differ only as the sets' tokens per step do.
"""
from __future__ import annotations

from sot.io import read_json
from sot.pipeline import eval_metrics_path, loss_path, sft_metrics_path


def rows(tasks, students, sets) -> list[dict]:
    out = []
    for task in tasks:
        for student in students:
            for s in sets:
                sft_path, eval_path = sft_metrics_path(task, student, s), eval_metrics_path(task, student, s)
                if not sft_path.exists():
                    continue
                m = read_json(sft_path)
                if m.get("skipped"):
                    continue
                plan = m.get("plan") or {}
                history = _logged_lrs(loss_path(task, student, s))
                e = read_json(eval_path) if eval_path.exists() else {}
                effect = e.get("adapter_effect") or {}
                cut = e.get("n_cut", e.get("n_truncated"))
                out.append({
                    "task": task, "student": student, "set": s, "records": m.get("n_records", m.get("n_train")),
                    "steps": m.get("steps"), "completion_tokens": m.get("completion_tokens"),
                    "budget_tokens": plan.get("planned_tokens"), "tokens_per_step": plan.get("tokens_per_step"),
                    "epochs": plan.get("planned_epochs"), "over_max_epochs": plan.get("over_max_epochs"),
                    "summed_lr": plan.get("summed_lr"), "first_lr": history[0] if history else None,
                    "longest": plan.get("max_tokens_per_example"), "cap": e.get("max_new_tokens"),
                    "cut": cut, "n": e.get("n"), "kept": effect.get("kept"), "budget": (m.get("config") or {}).get("budget"),
                })
    return out


def _logged_lrs(path) -> list[float]:
    """The learning rate of each logged step, in order, from the run's loss curve (metrics/sft/loss/...csv)."""
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [float(r["lr"]) for r in csv.DictReader(f) if r.get("lr") not in (None, "")]


def alike(table: list[dict]) -> list[str]:
    """Where the sets of one (task, student) were not trained alike by the stated rule (empty: they were)."""
    problems = []
    for key in {(r["task"], r["student"]) for r in table}:
        group = [r for r in table if (r["task"], r["student"]) == key]
        for r in group:
            where = f"{r['task']} · {r['student']} · {r['set']}"
            if r["first_lr"] is not None and r["first_lr"] <= 0:
                problems.append(f"{where}: its first optimizer step ran at learning rate 0")
            if r["over_max_epochs"]:
                problems.append(f"{where}: the token budget needs {r['epochs']:.1f} passes over its "
                                f"{r['records']} records (more than sft.max_epochs): it repeats a small set")
            if r["budget"] == "tokens" and r["completion_tokens"] is not None and r["tokens_per_step"]:
                target = max(x["budget_tokens"] or 0 for x in group)
                if abs(r["completion_tokens"] - target) > r["tokens_per_step"]:
                    problems.append(f"{where}: {r['completion_tokens']} completion tokens, more than one step "
                                    f"({r['tokens_per_step']:.0f}) from the budget's {target}")
        if len({r["steps"] for r in group if r["budget"] == "steps"}) > 1:
            problems.append(f"{key[0]} · {key[1]}: budget 'steps' but the sets ran different numbers of steps")
    return sorted(problems)


def markdown(tasks, students, sets) -> str:
    table = rows(tasks, students, sets)
    if not table:
        return ""
    head = ("| task | student | set | records | optimizer steps | completion tokens trained | passes over the set "
            "| summed lr | first-step lr | longest completion | decoding cap | outputs cut at the cap | adapter effect kept |")
    lines = ["How each set was trained and decoded (the budget counts loss-bearing tokens: completion + end token; "
             "no step runs at learning rate 0; the cap is at least the longest completion trained on):", "",
             head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def num(v, fmt="{:g}"):
        return "—" if v is None else fmt.format(v)

    for r in table:
        cut = "—" if r["cut"] is None or not r["n"] else f"{r['cut']} ({100 * r['cut'] / r['n']:.0f} %)"
        flag = " ⚑" if r["over_max_epochs"] else ""
        lines.append(f"| {r['task']} | {r['student']} | {r['set']} | {num(r['records'])} | {num(r['steps'])} "
                     f"| {num(r['completion_tokens'])} | {num(r['epochs'], '{:.2f}')}{flag} "
                     f"| {num(r['summed_lr'], '{:.2e}')} | {num(r['first_lr'], '{:.1e}')} | {num(r['longest'])} "
                     f"| {num(r['cap'])} | {cut} | {num(None if r['kept'] is None else 100 * r['kept'], '{:.1f} %')} |")
    issues = alike(table)
    lines += ["", "Trained alike by that rule: " + ("yes, every set." if not issues else "no:")]
    lines += [f"- {p}" for p in issues]
    return "\n".join(lines)
