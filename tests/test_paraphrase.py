"""sot.paraphrase: requests from the template, extraction from tags, and dropping (with a reason) what is
not extracted or no longer grades correct."""
import pytest

from sot.llm import Sample, Sampling
from sot.paraphrase import DEFAULT_TEMPLATE, REASONS, extract_tagged, fill_template, paraphrase
from sot.tasks import Problem, get_task


def tagged(text: str) -> str:
    return f"<rewritten>\n{text}\n</rewritten>"


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


def test_keeps_correct_drops_the_rest_with_a_reason():
    task, problems = gsm8k_problems()
    backend = FixedBackend([
        ["Here is the rewritten solution: " + tagged("Tom ends with 2 + 3 = 5 apples.\n#### 5")],   # kept
        [tagged("He has 4 + 5 = 10 apples.\n#### 10")],                                             # wrong
        ["Sure! He has 6 + 7 = 13 apples.\n#### 13"],                                               # no tags
        [tagged("1 + 1 = 2\n#### 2") + "\n\nLet me know if you need more help."],                   # kept
    ])
    records, m = paraphrase(h_records(problems), problems, task, backend, Sampling(max_new_tokens=64))
    assert [r["id"] for r in records] == ["gsm8k/t/0", "gsm8k/t/3"]
    assert records[0]["completion"] == "Tom ends with 2 + 3 = 5 apples.\n#### 5"
    assert records[1]["completion"] == "1 + 1 = 2\n#### 2"
    assert all(r["category"] == "P" for r in records) and records[1]["prompt"] == problems[3].question
    assert records[0]["source"]["model"] == "fixed" and records[0]["source"]["base"] == "H"
    assert records[0]["source"]["truncated"] is False
    assert m["requested"] == 4 and m["kept"] == 2 and m["keep_rate"] == 0.5
    assert m["dropped"] == {"no_tags": 1, "unclosed": 0, "empty": 0, "unparseable": 0, "wrong_answer": 1}
    assert m["sample_outcomes"] == {"correct": 2, "wrong_answer": 1, "no_tags": 1}
    # the requests carry the question and the human solution through the template
    content = backend.requests[1][0]["content"]
    assert problems[1].question in content and problems[1].reference in content


def test_first_correct_of_n_samples_is_kept():
    task, problems = gsm8k_problems()
    backend = FixedBackend([[tagged("#### 6"), tagged("2 + 3 = 5\n#### 5"), tagged("#### 5")]] + [["x"]] * 3)
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
    backend = FixedBackend([[tagged("#### 5")]])
    paraphrase(h_records(problems[:1]), problems, task, backend, Sampling(), template="Redo {solution} for {question}")
    assert backend.requests[0][0]["content"].startswith("Redo " + problems[0].reference)


TRACE = "Tom has 2 apples and buys 3 more: 2 + 3 = 5.\n#### 5"
# What small instruct models write around the trace (the forms seen in the demo's P), each with the tagged trace.
DEBRIS = {
    "same-line preamble": "Here is the rewritten solution: " + tagged(TRACE),
    "heading without colon": "## Rewritten Solution\n\n" + tagged(TRACE),
    "bold label": "**Rewritten solution**\n" + tagged(TRACE),
    "okay preamble": "Okay, I will rewrite the solution in my own words.\n\n" + tagged(TRACE),
    "echoed problem": ("Problem:\nTom has 2 apples and buys 3 more. How many now?\n\nSolution:\n"
                       + tagged(TRACE)),
    "closing note": tagged(TRACE) + "\n\nNote: I kept every step of the reasoning and the final answer.",
    "echoed example first": "<rewritten>your rewritten solution</rewritten>\n" + tagged(TRACE),
    "all at once": ("Okay, I will rewrite it.\n## Rewritten Solution\n**Rewritten solution**\n" + tagged(TRACE)
                    + "\nNote: I kept every step.\nLet me know if you need more help."),
}


@pytest.mark.parametrize("form", DEBRIS)
def test_debris_around_the_tags_never_reaches_p(form):
    assert extract_tagged(DEBRIS[form]) == (TRACE, None)
    task, problems = gsm8k_problems()
    records, m = paraphrase(h_records(problems[:1]), problems, task, FixedBackend([[DEBRIS[form]]]), Sampling())
    assert [r["completion"] for r in records] == [TRACE] and m["kept"] == 1


def test_debris_without_tags_is_dropped_as_no_tags():
    task, problems = gsm8k_problems()
    untagged = [[t.replace("<rewritten>", "").replace("</rewritten>", "")] for t in DEBRIS.values()]
    records, m = paraphrase(h_records(problems[:1]) * len(untagged), problems, task, FixedBackend(untagged),
                            Sampling())
    assert records == [] and m["dropped"]["no_tags"] == len(untagged)


def test_inside_the_tags_is_kept_verbatim():
    inner = ("## Step 1\n**Bold** words, a line that says Here is the rewritten solution: and <answer> 1 + 2 </answer>"
             "\n```python\ndef f(x):\n    return x\n```\n\n  indented   spaces  \n#### 5")
    assert extract_tagged(f"<rewritten>{inner}</rewritten>") == (inner, None)
    assert extract_tagged(f"<REWRITTEN>\n\n{inner}\n</Rewritten >")[0] == inner     # case, whitespace by the tags
    assert extract_tagged("<rewritten>first</rewritten> then <rewritten>second</rewritten>") == ("second", None)
    assert extract_tagged("<rewritten>done</rewritten> and <rewritten>cut off") == ("done", None)   # last complete


def test_extraction_reasons():
    assert extract_tagged("no tags at all") == (None, "no_tags")
    assert extract_tagged("<rewritten>cut by the length limit") == (None, "unclosed")
    assert extract_tagged("<rewritten> \n </rewritten>") == (None, "empty")
    assert extract_tagged("a stray </rewritten> closing tag") == (None, "no_tags")
    assert set(REASONS) == {"no_tags", "unclosed", "empty", "unparseable", "wrong_answer"}


def test_default_template_asks_for_tags_in_one_line():
    assert "<rewritten>your rewritten solution</rewritten>" in DEFAULT_TEMPLATE.splitlines()
    assert extract_tagged(DEFAULT_TEMPLATE) == ("your rewritten solution", None)   # the example is well-formed
    assert len(DEFAULT_TEMPLATE.split()) < 90                                         # short, for a 0.5B teacher


def test_every_drop_has_its_reason():
    task, problems = gsm8k_problems()
    replies = [["<rewritten>2 + 3 = 5\n#### 5"], ["<rewritten></rewritten>"], [tagged("I cannot say.")],
               [tagged("1 + 1 = 3\n#### 3")]]
    records, m = paraphrase(h_records(problems), problems, task, FixedBackend(replies), Sampling())
    assert records == []
    assert m["dropped"] == {"no_tags": 0, "unclosed": 1, "empty": 1, "unparseable": 1, "wrong_answer": 1}
    two = FixedBackend([["no tags", tagged("2 + 3 = 6\n#### 6")]])          # n = 2: the furthest sample decides
    _, m = paraphrase(h_records(problems[:1]), problems, task, two, Sampling(n=2, temperature=1.0))
    assert m["dropped"]["wrong_answer"] == 1 and m["sample_outcomes"] == {"no_tags": 1, "wrong_answer": 1}


def test_unknown_ids_are_reported():
    task, problems = gsm8k_problems()
    bad = h_records(problems)[:1]
    bad[0]["id"] = "gsm8k/t/99"
    with pytest.raises(ValueError, match="gsm8k/t/99"):
        paraphrase(bad, problems, task, FixedBackend([]), Sampling())


def test_problem_dict_mapping_is_accepted():
    task, problems = gsm8k_problems()
    records, _ = paraphrase(h_records(problems[:1]), {p.id: p for p in problems}, task,
                            FixedBackend([[tagged("#### 5")]]), Sampling())
    assert isinstance(problems[0], Problem) and len(records) == 1
