"""sot.corrupt: flawed traces always grade wrong; F<pct> mixtures are nested and seeded."""
import random

import pytest

from sot.corrupt import OPERATORS, corrupt_traces, lm_rewrite, make_mixtures, mix
from sot.perturb import mutate_program, perturb_steps
from sot.llm import Sample, Sampling
from sot.steps import step_validity
from sot.tasks import get_task


def as_records(problems, category="G"):
    return [{"id": p.id, "task": p.task, "category": category, "prompt": p.question, "completion": p.reference,
             "source": {"sample": 0}} for p in problems]


@pytest.mark.parametrize("name,n", [("gsm8k", 30), ("math", 30), ("countdown", 30)])
def test_perturb_steps_traces_all_grade_wrong_with_every_step_invalid(data_dir, name, n):
    task = get_task(name)
    problems = task.load_split("train", data_dir=data_dir, limit=n, seed=7)
    base = as_records(problems)
    flawed, m = corrupt_traces(base, problems, task, "perturb_steps", seed=0)
    assert m["n_flawed"] == len(flawed) == n and m["n_failed"] == 0
    grades = task.grade_many(problems, [f["completion"] for f in flawed])
    assert not any(g.correct for g in grades) and all(g.extracted is not None for g in grades)
    before, after = step_validity(base, name), step_validity(flawed, name)
    assert after["n_steps"] == before["n_steps"] and after["n_valid"] == 0
    for b, f in zip(base, flawed):  # same shape: same lines, only numbers/operators changed
        assert b["completion"].count("\n") == f["completion"].count("\n")
        assert f["source"]["operator"] == "perturb_steps" and f["source"]["base_category"] == "G"


def test_perturb_steps_propagates_wrong_results_and_is_seeded():
    task = get_task("gsm8k")
    p = task.from_record({"question": "Natalia sold clips to 48 friends in April, and half as many in May. "
                                      "How many clips in April and May?",
                          "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                                    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"}, id="g/0")
    out = perturb_steps(p, p.reference, random.Random(5))
    assert out == perturb_steps(p, p.reference, random.Random(5))
    first = out.split("<<48/2=")[1].split(">>")[0]
    assert first != "24" and f"48+{first}" in out  # the wrong May count is carried into the next step
    assert not task.grade(p, out).correct and step_validity([out], "gsm8k")["n_valid"] == 0


def test_mbpp_mutations_fail_their_tests(data_dir):
    task = get_task("mbpp")
    problems = task.load_split("train", data_dir=data_dir, limit=8, seed=3)
    fenced = [dict(r, completion=f"Here is my solution:\n```python\n{r['completion']}\n```\nDone.")
              for r in as_records(problems)]
    flawed, m = corrupt_traces(fenced, problems, task, "perturb_steps", seed=0, max_tries=4, workers=2)
    assert m["n_flawed"] + m["n_failed"] == 8 and m["n_flawed"] >= 7
    assert not any(g.correct for g in task.grade_many(problems, [f["completion"] for f in flawed]))
    for f in flawed:  # the prose around the code block is kept
        assert f["completion"].startswith("Here is my solution:\n```python\n") and f["completion"].endswith("Done.")


def test_mutate_program_changes_code_or_says_none():
    code = "def f(xs):\n    return [x for x in xs if x > 0]\n"
    outs = {mutate_program(code, random.Random(s)) for s in range(10)}
    assert code not in outs and all(o.startswith("def f(xs):") for o in outs)
    assert mutate_program("x = y\n", random.Random(0)) is None


class ScriptedOperator:
    """attempt 0: the trace unchanged; later: a wrong answer, except for `stubborn` ids (still correct)."""
    name = "scripted"

    def __init__(self, stubborn):
        self.stubborn, self.calls = stubborn, []

    def batch(self, problems, traces, attempt=0):
        self.calls.append(len(problems))
        return [t if attempt == 0 else t + "\nChecked." if p.id in self.stubborn
                else t.rsplit("####", 1)[0] + "#### 100000" for p, t in zip(problems, traces)]


def toy_gsm8k(n):
    task = get_task("gsm8k")
    return task, [task.from_record({"question": f"What is {i} + 1?", "answer": f"{i}+1=<<{i}+1={i + 1}>>{i + 1}\n"
                                                                          f"#### {i + 1}"}, id=f"g/{i}")
                  for i in range(n)]


def test_traces_that_stay_correct_are_retried_then_reported_never_kept():
    task, problems = toy_gsm8k(5)
    op = ScriptedOperator(stubborn={"g/2"})
    flawed, m = corrupt_traces(as_records(problems), problems, task, op, seed=0, max_tries=3)
    assert [f["id"] for f in flawed] == ["g/0", "g/1", "g/3", "g/4"]
    assert all(f["source"]["attempt"] == 1 for f in flawed) and op.calls == [5, 5, 1]
    assert m["failed_ids"] == ["g/2"] and m["failure_reasons"] == {"graded_correct": 1}


def test_unknown_operator_and_registry():
    assert "perturb_steps" in OPERATORS
    task, problems = toy_gsm8k(1)
    with pytest.raises(ValueError, match="lm_rewrite"):
        corrupt_traces(as_records(problems), problems, task, "nonsense")


def synthetic(n, missing=()):
    base = [{"id": f"p{i}", "task": "t", "category": "G", "prompt": "q", "completion": f"clean {i}", "source": {}}
            for i in range(n)]
    flawed = [{**r, "category": "F", "completion": f"flawed {i}", "source": {"operator": "op"}}
              for i, r in enumerate(base) if r["id"] not in missing]
    return base, flawed


def flawed_ids(records):
    return {r["id"] for r in records if r["source"]["flawed"]}


def test_mixtures_are_nested_sized_and_stable_under_reordering():
    base, flawed = synthetic(10)
    sets, m = mix(base, flawed, seed=1)
    assert list(sets) == ["F0", "F25", "F50", "F75", "F100"]
    ids = [flawed_ids(sets[k]) for k in sets]
    assert [len(s) for s in ids] == [0, 3, 5, 8, 10]  # round half up: 2.5 -> 3, 7.5 -> 8
    assert all(a <= b for a, b in zip(ids, ids[1:]))
    for name, recs in sets.items():
        assert [r["id"] for r in recs] == [r["id"] for r in base] and {r["category"] for r in recs} == {name}
        assert all(r["completion"].startswith("flawed" if r["id"] in flawed_ids(recs) else "clean") for r in recs)
    again, _ = mix(list(reversed(base)), list(reversed(flawed)), seed=1)
    assert [flawed_ids(again[k]) for k in again] == ids
    other, _ = mix(base, flawed, seed=2)
    assert flawed_ids(other["F50"]) != ids[2]
    assert m["sets"]["F25"] == {"size": 10, "n_flawed": 3, "target_flawed": 3, "shortfall": 0,
                                "skipped_failures": 0, "operators": {"op": 3}}


def test_failed_traces_stay_clean_and_shortfall_is_reported():
    base, flawed = synthetic(8, missing={"p3", "p5"})
    sets, m = mix(base, flawed, fractions=(0, 50, 100), seed=0)
    assert not ({"p3", "p5"} & flawed_ids(sets["F100"]))
    assert flawed_ids(sets["F50"]) <= flawed_ids(sets["F100"]) and len(flawed_ids(sets["F50"])) == 4
    assert m["sets"]["F100"]["shortfall"] == 2 and m["sets"]["F100"]["n_flawed"] == 6
    with pytest.raises(ValueError, match="percentage"):
        mix(base, flawed, fractions=(150,))


class FixedBackend:
    """Replies with texts[k] to a request that contains problem k's question."""

    def __init__(self, problems, texts):
        self.replies, self.seeds = {p.record["question"]: t for p, t in zip(problems, texts)}, []

    def generate(self, prompts, sampling, progress=True):
        self.seeds.append(sampling.seed)
        return [[Sample(next(t for q, t in self.replies.items() if q in m[0]["content"]), 5, "stop")]
                for m in prompts]


def test_lm_rewrite_keeps_only_wrong_outputs():
    task, problems = toy_gsm8k(4)
    backend = FixedBackend(problems, [
        "Here is the flawed solution: <rewritten>\n0+1=5\n#### 5\n</rewritten>\nNote: every step is wrong.",  # kept
        "<rewritten>1+1=2\n#### 2</rewritten>",           # still correct: rejected
        "<rewritten>I cannot do that.</rewritten>",         # no answer: rejected
        "Sure, here it is:\n3+1=7\n#### 7"])                # no tags: not extracted, not kept
    op = lm_rewrite(backend, Sampling(temperature=0.8, seed=10))
    flawed, m = corrupt_traces(as_records(problems), problems, task, op, max_tries=2)
    assert [(f["id"], f["completion"]) for f in flawed] == [("g/0", "0+1=5\n#### 5")]
    assert m["operator"] == "lm_rewrite" and m["n_failed"] == 3 and backend.seeds == [10, 11]
    assert m["failure_reasons"]["no_output"] == 1 and op.extraction_failures == {"unclosed": 2}   # one per try (the reply is opened with the tag)
    assert op.last_reasons == [None, None, "unclosed"]                 # the last try: the three still pending
    with pytest.raises(ValueError, match="question"):
        lm_rewrite(backend, Sampling(), template="only {solution}")


def test_lm_rewrite_template_asks_for_tags():
    from sot.corrupt import DEFAULT_FLAW_TEMPLATE
    from sot.paraphrase import extract_tagged

    assert "<rewritten>your rewritten solution</rewritten>" in DEFAULT_FLAW_TEMPLATE.splitlines()
    assert extract_tagged(DEFAULT_FLAW_TEMPLATE) == ("your rewritten solution", None)
    assert "{question}" in DEFAULT_FLAW_TEMPLATE and "{solution}" in DEFAULT_FLAW_TEMPLATE


def test_make_mixtures_end_to_end():
    task, problems = toy_gsm8k(8)
    sets, flawed, m = make_mixtures(as_records(problems), problems, task, fractions=(0, 50, 100), seed=3)
    assert len(flawed) == 8 and m["mix"]["sets"]["F50"]["n_flawed"] == 4
    graded = task.grade_many(problems, [r["completion"] for r in sets["F100"]])
    assert not any(g.correct for g in graded)
    graded = task.grade_many(problems, [r["completion"] for r in sets["F0"]])
    assert all(g.correct for g in graded)


@pytest.mark.slow
@pytest.mark.parametrize("name,n", [("gsm8k", 1000), ("math", 1000), ("countdown", 1000), ("mbpp", None)])
def test_perturb_steps_at_scale(data_dir, name, n):
    """Larger samples of real human traces (all of MBPP train): almost no failures, none kept correct."""
    task = get_task(name)
    problems = task.load_split("train", data_dir=data_dir, limit=n, seed=0)
    base = as_records(problems)
    flawed, m = corrupt_traces(base, problems, task, "perturb_steps", seed=0, workers=2)
    assert m["n_failed"] <= 0.01 * len(base)
    by_id = {p.id: p for p in problems}
    grades = task.grade_many([by_id[f["id"]] for f in flawed], [f["completion"] for f in flawed], workers=2)
    assert not any(g.correct for g in grades)
    if name != "mbpp":
        validity = step_validity(flawed, name)
        assert validity["n_valid"] <= 0.005 * validity["n_steps"]


def test_mixtures_keep_a_base_traces_truncation_flag_at_the_top_of_the_source():
    """A G trace cut by the length limit (classify.truncated: keep) is trained without an end token; its copy
    in an F set, flawed or clean, must say so where sft.data.is_truncated looks."""
    from sot.corrupt import mix
    from sot.sft.data import is_truncated

    base = [{"id": f"p{i}", "category": "G", "completion": f"t{i}",
             "source": {"finish_reason": "length" if i < 2 else "stop", "truncated": i < 2}} for i in range(4)]
    flawed = [{"id": f"p{i}", "category": "F", "completion": f"bad{i}", "source": {"operator": "x"}} for i in range(4)]
    sets, _ = mix(base, flawed, fractions=[0, 50, 100], seed=0)
    for name, records in sets.items():
        assert [is_truncated(r) for r in records] == [True, True, False, False], name
