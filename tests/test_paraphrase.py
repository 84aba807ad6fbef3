"""sot.paraphrase: requests from the template, cleaning, and dropping paraphrases that no longer grade correct."""
import pytest

from sot.llm import Sample, Sampling
from sot.paraphrase import DEFAULT_TEMPLATE, clean_output, fill_template, paraphrase
from sot.tasks import Problem, get_task


class FixedBackend:
    """Returns fixed texts: replies[k] for the k-th request (a list of n texts each); records the requests."""

    def __init__(self, replies):
        self.replies, self.requests = replies, []

    def generate(self, prompts, sampling, progress=True):
        self.requests += prompts
        return [[Sample(t, len(t.split()), "stop") for t in self.replies[i][:sampling.n]]
                for i in range(len(prompts))]

    def info(self):
        return {"model": "fixed", "backend": "fake"}


def gsm8k_problems():
    task = get_task("gsm8k")
    records = [{"question": f"Tom has {a} apples and buys {b} more. How many now?",
                "answer": f"{a}+{b}=<<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"}
               for a, b in ((2, 3), (4, 5), (6, 7), (1, 1))]
    return task, [task.from_record(r, id=f"gsm8k/t/{i}") for i, r in enumerate(records)]


def h_records(problems):
    return [{"id": p.id, "task": p.task, "category": "H", "prompt": p.question, "completion": p.reference,
             "source": {}} for p in problems]


def test_keeps_correct_drops_wrong_and_unparseable():
    task, problems = gsm8k_problems()
    backend = FixedBackend([
        ["Here is the rewritten solution:\nTom ends with 2 + 3 = 5 apples.\n#### 5"],   # kept, wrapper stripped
        ["He has 4 + 5 = 10 apples.\n#### 10"],                                       # wrong answer
        [""],                                                                           # nothing
        ["Sure! Here's the paraphrased solution:\n1 + 1 = 2\n#### 2\n\nLet me know if you need more help."],
    ])
    records, m = paraphrase(h_records(problems), problems, task, backend, Sampling(max_new_tokens=64))
    assert [r["id"] for r in records] == ["gsm8k/t/0", "gsm8k/t/3"]
    assert records[0]["completion"] == "Tom ends with 2 + 3 = 5 apples.\n#### 5"
    assert records[1]["completion"] == "1 + 1 = 2\n#### 2"
    assert all(r["category"] == "P" for r in records) and records[1]["prompt"] == problems[3].question
    assert records[0]["source"]["model"] == "fixed" and records[0]["source"]["base"] == "H"
    assert m["requested"] == 4 and m["kept"] == 2 and m["dropped_wrong"] == 1 and m["dropped_unparseable"] == 1
    assert m["keep_rate"] == 0.5
    # the requests carry the question and the human solution through the template
    content = backend.requests[1][0]["content"]
    assert problems[1].question in content and problems[1].reference in content


def test_first_correct_of_n_samples_is_kept():
    task, problems = gsm8k_problems()
    backend = FixedBackend([["#### 6", "2 + 3 = 5\n#### 5", "#### 5"]] + [["x"]] * 3)
    records, m = paraphrase(h_records(problems[:1]), problems, task, backend, Sampling(n=3))
    assert records[0]["completion"] == "2 + 3 = 5\n#### 5" and records[0]["source"]["sample"] == 1


def test_template_is_an_argument_and_is_checked():
    assert "{question}" in DEFAULT_TEMPLATE and "{solution}" in DEFAULT_TEMPLATE
    filled = fill_template("Q: {question}\nS: {solution}\nKeep \\boxed{...} and {other}.", "what is {x}?",
                           "\\boxed{2} {solution}")
    assert filled == "Q: what is {x}?\nS: \\boxed{2} {solution}\nKeep \\boxed{...} and {other}."
    task, problems = gsm8k_problems()
    with pytest.raises(ValueError, match="solution"):
        paraphrase(h_records(problems), problems, task, FixedBackend([]), Sampling(), template="Q: {question}")
    backend = FixedBackend([["#### 5"]])
    paraphrase(h_records(problems[:1]), problems, task, backend, Sampling(), template="Redo {solution} for {question}")
    assert backend.requests[0][0]["content"].startswith("Redo " + problems[0].reference)


def test_clean_output():
    assert clean_output("**Rewritten solution:**\n2 + 2 = 4\n#### 4", "gsm8k") == "2 + 2 = 4\n#### 4"
    assert clean_output("```\nWe get $\\boxed{3}$.\n```", "math") == "We get $\\boxed{3}$."
    code = "```python\ndef f(x):\n    return x\n```"
    assert clean_output("Here is the rewritten solution:\n" + code, "mbpp") == code
    text = "Solution steps: 2 + 2 = 4.\n#### 4"  # a first line that is content, not a wrapper, stays
    assert clean_output(text, "gsm8k") == text


def test_unknown_ids_are_reported():
    task, problems = gsm8k_problems()
    bad = h_records(problems)[:1]
    bad[0]["id"] = "gsm8k/t/99"
    with pytest.raises(ValueError, match="gsm8k/t/99"):
        paraphrase(bad, problems, task, FixedBackend([]), Sampling())


def test_problem_dict_mapping_is_accepted():
    task, problems = gsm8k_problems()
    records, _ = paraphrase(h_records(problems[:1]), {p.id: p for p in problems}, task,
                            FixedBackend([["#### 5"]]), Sampling())
    assert isinstance(problems[0], Problem) and len(records) == 1
