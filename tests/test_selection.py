"""sot.selection: grading teacher samples and picking G/W per problem by a seeded, order-free rule."""
import random
import re

import pytest

from sot.io import DataError
from sot.selection import classify, grade_samples, pass_rate_histogram, select_traces
from sot.tasks import Grade, Problem


class FakeTask:
    """Grades "#### N" against problem.answer; no "####" is unparseable."""
    name = "fake"

    def human_trace(self, problem):
        return problem.reference

    def grade_many(self, problems, completions, workers=None):
        out = []
        for p, c in zip(problems, completions):
            m = re.search(r"#### (\S+)", c)
            out.append(Grade(bool(m) and m.group(1) == p.answer, m.group(1) if m else None))
        return out


def make_problems(n=6):
    return [Problem(f"fake/{i}", "fake", f"question {i}", f"human {i}\n#### {i}", str(i), {}) for i in range(n)]


def make_samples(problems, k=8, seed=0):
    """k samples per problem: a mix of correct, wrong and unparseable; problem 0 all correct, 1 all wrong."""
    rng, out = random.Random(seed), []
    for p in problems:
        for j in range(k):
            kind = "right" if p.id == "fake/0" else "wrong" if p.id == "fake/1" else rng.choice(
                ["right", "wrong", "junk"])
            text = {"right": f"s{j}\n#### {p.answer}", "wrong": f"s{j}\n#### 99{j}", "junk": f"s{j} truncated"}[kind]
            out.append({"id": p.id, "sample": j, "completion": text, "prompt": p.question, "task": "fake",
                        "n_tokens": 5, "finish_reason": "length" if kind == "junk" else "stop",
                        "source": {"model": "teacher"}})
    return out


def picks(sets):
    return {name: {r["id"]: r["source"]["sample"] for r in recs} for name, recs in sets.items() if name != "H"}


def test_g_correct_w_wrong_and_record_format():
    problems = make_problems()
    sets, metrics = classify(make_samples(problems), problems, FakeTask(), seed=0, balanced=False)
    task = FakeTask()
    by_id = {p.id: p for p in problems}
    for cat, want in (("G", True), ("W", False)):
        for r in sets[cat]:
            assert set(r) == {"id", "task", "category", "prompt", "completion", "source"} and r["category"] == cat
            assert r["prompt"] == by_id[r["id"]].question and r["source"]["model"] == "teacher"
            assert task.grade_many([by_id[r["id"]]], [r["completion"]])[0].correct is want
    assert len(sets["H"]) == len(problems) and "fake/1" not in {r["id"] for r in sets["G"]}
    assert sets["G"][0]["source"]["finish_reason"] == "stop" and metrics["sets"]["W"]["n_truncated"] == 0
    assert metrics["n_samples"] == 48 and metrics["n_problems"] == 6
    assert sum(metrics["pass_rate_hist"]["counts"]) == 6
    assert metrics["pass_rate_hist"]["all_correct"] == 1 and metrics["pass_rate_hist"]["all_wrong"] >= 1


def test_rule_is_seeded_stable_under_reordering_and_independent_of_other_problems():
    problems = make_problems(12)
    samples = make_samples(problems, k=10)
    base = picks(classify(samples, problems, FakeTask(), seed=3)[0])
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    assert picks(classify(shuffled, problems, FakeTask(), seed=3)[0]) == base
    fewer = [s for s in samples if s["id"] != "fake/5"]
    other = picks(classify(fewer, problems, FakeTask(), seed=3)[0])
    assert all(other[c][pid] == base[c][pid] for c in ("G", "W") for pid in other[c])
    assert picks(classify(samples, problems, FakeTask(), seed=4)[0]) != base  # the seed matters


def test_balanced_restricts_h_g_w_to_the_same_problems():
    problems = make_problems(12)
    sets, metrics = classify(make_samples(problems), problems, FakeTask(), balanced=True)
    ids = [[r["id"] for r in sets[c]] for c in ("H", "G", "W")]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == metrics["n_problems_with_both"]
    assert "fake/0" not in ids[0] and "fake/1" not in ids[0]


def test_w_policy_parsed_excludes_unparseable_and_any_may_take_them():
    problems = [Problem("fake/0", "fake", "q", "h\n#### 0", "0", {})]
    samples = [{"id": "fake/0", "sample": j, "completion": t} for j, t in
               enumerate(["#### 0", "no answer", "cut off", "still going", "#### 7"])]
    sets, m = select_traces(grade_samples(samples, problems, FakeTask()), problems, w_policy="parsed",
                            human_trace=FakeTask().human_trace)
    assert sets["W"][0]["completion"] == "#### 7" and m["sets"]["W"]["n_unparseable"] == 0
    assert m["n_unparseable_samples"] == 3 and m["frac_unparseable_samples"] == pytest.approx(0.6)
    chosen = set()
    for seed in range(20):
        sets, m = classify(samples, problems, FakeTask(), seed=seed, w_policy="any")
        chosen.add(sets["W"][0]["completion"])
    assert "#### 7" in chosen and len(chosen) > 1  # unparseable traces are eligible under "any"
    with pytest.raises(ValueError, match="w_policy"):
        classify(samples, problems, FakeTask(), w_policy="wrong")


def test_bad_sample_ids_fail_before_grading():
    problems = make_problems(2)
    with pytest.raises(DataError, match="fake/9"):
        classify([{"id": "fake/9", "sample": 0, "completion": "x"}], problems, FakeTask())
    with pytest.raises(DataError, match="completion"):
        classify([{"id": "fake/0", "sample": 0}], problems, FakeTask())


def test_pass_rate_histogram_bins():
    h = pass_rate_histogram([0, 0.05, 0.1, 0.5, 0.99, 1.0])
    assert h["counts"][0] == 2 and h["counts"][1] == 1 and h["counts"][5] == 1 and h["counts"][-1] == 2
    assert h["all_wrong"] == 1 and h["all_correct"] == 1


def test_real_gsm8k_grader(data_dir):
    from sot.tasks import get_task

    task = get_task("gsm8k")
    problems = task.load_split("test", data_dir=data_dir, limit=3, seed=0)
    samples = []
    for p in problems:
        samples += [{"id": p.id, "sample": 0, "completion": p.reference},
                    {"id": p.id, "sample": 1, "completion": f"So the answer is {int(float(p.answer)) + 1}.\n"
                                                            f"#### {int(float(p.answer)) + 1}"}]
    sets, m = classify(samples, problems, task)
    assert [r["source"]["sample"] for r in sets["G"]] == [0, 0, 0]
    assert [r["source"]["sample"] for r in sets["W"]] == [1, 1, 1]
    assert m["n_problems_with_both"] == 3 and m["frac_correct_samples"] == 0.5


def truncation_case():
    """Two problems; the only correct sample of fake/0 and the only parsed wrong sample of fake/1 were cut by the
    length limit (a GSM8K-like trace cut at "...Multiply that" still has a last number)."""
    problems = make_problems(2)
    rows = [("fake/0", 0, "s0 ... #### 0", "length"), ("fake/0", 1, "s1\n#### 7", "stop"),
            ("fake/0", 2, "s2 cut", "length"),
            ("fake/1", 0, "s0\n#### 1", "stop"), ("fake/1", 1, "s1 Multiply that #### 5", "length"),
            ("fake/1", 2, "s2\n#### 1", "stop")]
    samples = [{"id": pid, "sample": j, "completion": text, "finish_reason": reason, "n_tokens": 4}
               for pid, j, text, reason in rows]
    return problems, samples


def test_truncated_samples_are_never_g_or_w_by_default():
    problems, samples = truncation_case()
    sets, m = classify(samples, problems, FakeTask(), balanced=False)
    assert [r["id"] for r in sets["G"]] == ["fake/1"] and [r["id"] for r in sets["W"]] == ["fake/0"]
    assert all(r["source"]["truncated"] is False for name in ("G", "W") for r in sets[name])
    assert {r["source"]["truncated_policy"] for name in sets for r in sets[name]} == {"drop"}   # every record
    t = m["truncated"]
    assert m["truncated_policy"] == "drop" and t["policy"] == "drop"
    assert t["n_samples"] == 3 and t["frac_samples"] == pytest.approx(0.5)
    assert t["among_correct"] == 1 and t["among_wrong"] == 1 and t["excluded"] == {"G": 1, "W": 1}
    assert t["problems_lost_G"] == 1 and t["problems_lost_W"] == 1
    assert m["sets"]["G"]["n_truncated"] == 0 and m["sets"]["W"]["n_truncated"] == 0
    balanced, _ = classify(samples, problems, FakeTask(), balanced=True)
    assert all(balanced[name] == [] for name in ("H", "G", "W"))      # no problem keeps both a G and a W


def test_keep_makes_truncated_samples_eligible_and_says_so():
    problems, samples = truncation_case()
    sets, m = classify(samples, problems, FakeTask(), balanced=False, truncated="keep")
    assert [r["id"] for r in sets["G"]] == ["fake/0", "fake/1"] and len(sets["W"]) == 2
    g0 = sets["G"][0]
    assert g0["source"]["truncated"] is True and g0["source"]["finish_reason"] == "length"
    assert g0["source"]["truncated_policy"] == "keep" and sets["H"][0]["source"]["truncated_policy"] == "keep"
    assert m["truncated"]["excluded"] == {"G": 0, "W": 0} and m["truncated"]["problems_lost_G"] == 0
    assert m["sets"]["G"]["n_truncated"] == 1 and m["sets"]["W"]["n_truncated"] == 1
    with pytest.raises(ValueError, match="classify.truncated"):
        classify(samples, problems, FakeTask(), truncated="maybe")


def test_truncated_g_and_w_are_trained_without_an_end_token(tiny_model):
    """What `keep` means downstream: the record's source flag reaches sot.sft.data, which adds no end token."""
    from transformers import AutoTokenizer

    from sot.sft.data import IGNORE, build_dataset

    problems, samples = truncation_case()
    sets, _ = classify(samples, problems, FakeTask(), balanced=False, truncated="keep")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tset = build_dataset(sets["G"], tok, "plain", 128)
    assert tset.n_unterminated == 1
    last = [[t for t in e["labels"] if t != IGNORE][-1] for e in tset.examples]
    assert last[0] != tok.eos_token_id and last[1] == tok.eos_token_id
