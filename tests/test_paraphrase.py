"""sot.paraphrase: requests from the template, extraction from tags, and dropping (with a reason) what is
not extracted or no longer grades correct."""
import pytest

from sot.llm import Sample, Sampling
from sot.paraphrase import (DEFAULT_TEMPLATE, REASONS, extract_tagged, fill_template, length_ratio, paraphrase,
                            ratio_histogram, reasoning_words, states_answer)
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
    # the reply is opened with the tag for the model, so a reply that never closes it is "unclosed"
    assert m["dropped"] == {"no_tags": 0, "unclosed": 1, "empty": 0, "commentary": 0, "unparseable": 0, "wrong_answer": 1,
                            "no_answer_statement": 0, "too_short": 0, "unchanged": 0}
    assert m["sample_outcomes"] == {"correct": 2, "wrong_answer": 1, "unclosed": 1}
    # the requests carry the problem as the dataset states it (no answer-format instruction, which a small
    # model answers instead of rewriting) and the human solution, and open the reply with the tag
    user, assistant = backend.requests[1]
    assert problems[1].record["question"] in user["content"] and problems[1].reference in user["content"]
    assert "The answer is <number>" not in user["content"]
    assert assistant == {"role": "assistant", "content": "<rewritten>\n"}


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
    assert backend.requests[0][0]["content"].startswith(f"Redo {problems[0].reference} for {problems[0].record['question']}")


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


def test_debris_that_never_closes_the_opened_tag_is_dropped_as_unclosed():
    task, problems = gsm8k_problems()
    untagged = [[t.replace("<rewritten>", "").replace("</rewritten>", "")] for t in DEBRIS.values()]
    records, m = paraphrase(h_records(problems[:1]) * len(untagged), problems, task, FixedBackend(untagged),
                            Sampling())
    assert records == [] and m["dropped"]["unclosed"] == len(untagged)


def test_inside_the_tags_is_kept_verbatim():
    inner = ("## Step 1\n**Bold** words, a line that says Here is the rewritten solution: and <answer> 1 + 2 </answer>"
             "\n```python\ndef f(x):\n    return x\n```\n\n  indented   spaces  \n#### 5")
    assert extract_tagged(f"<rewritten>{inner}</rewritten>") == (inner, None)
    assert extract_tagged(f"<REWRITTEN>\n\n{inner}\n</Rewritten >")[0] == inner     # case, whitespace by the tags
    assert extract_tagged("<rewritten>first</rewritten> then <rewritten>second</rewritten>") == ("second", None)
    assert extract_tagged("<rewritten>done</rewritten> and <rewritten>cut off") == ("done", None)   # last complete
    # the 0.5B teacher closed twice (a demo MBPP reply): the second tag is not part of the trace
    assert extract_tagged("<rewritten>def f():\n    return 1\n</rewritten>\n</rewritten>") == ("def f():\n    return 1", None)


def test_extraction_reasons():
    assert extract_tagged("no tags at all") == (None, "no_tags")
    assert extract_tagged("<rewritten>cut by the length limit") == (None, "unclosed")
    assert extract_tagged("<rewritten> \n </rewritten>") == (None, "empty")
    assert extract_tagged("a stray </rewritten> closing tag") == (None, "no_tags")
    assert REASONS == ("no_tags", "unclosed", "empty", "commentary", "unparseable", "wrong_answer",
                       "no_answer_statement", "too_short", "unchanged")


@pytest.mark.parametrize("text, talks", [
    ("Here is the completed Python code:\n\n```python\ndef f():\n    return 1\n```", True),   # the study's P
    ("Sure! Here's the rewritten solution:\nHalf of 48 is 24.\n#### 24", True),
    ("Half of 48 is 24.\n#### 24\nNote: the calculator annotations were removed.", True),
    ("def f(x):\n    return x\n\nThis code defines a function that returns its argument.", True),
    ("Half of 48 is 24, so she sold 48 + 24 = 72 clips.\n#### 72", False),
    ("def f(x):\n    # here is the loop:\n    return x", False),          # a comment inside the code is fine
    ("The following numbers are even: 2, 4.\n#### 2", False),            # prose ending in a colon mid-trace
    ("Here is how: she sold 48 clips and half as many in May.\n#### 72", False),   # no colon at the line's end
])
def test_commentary_inside_the_tags_is_found(text, talks):
    from sot.paraphrase import has_commentary

    assert has_commentary(text) is talks


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
    assert m["dropped"] == {"no_tags": 0, "unclosed": 1, "empty": 1, "commentary": 0, "unparseable": 1, "wrong_answer": 1,
                            "no_answer_statement": 0, "too_short": 0, "unchanged": 0}
    two = FixedBackend([["no tags", tagged("2 + 3 = 6\n#### 6")]])          # n = 2: the furthest sample decides
    _, m = paraphrase(h_records(problems[:1]), problems, task, two, Sampling(n=2, temperature=1.0))
    assert m["dropped"]["wrong_answer"] == 1 and m["sample_outcomes"] == {"unclosed": 1, "wrong_answer": 1}


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


# The keep rule: graded correct, the answer stated as the task's contract reads it, at least half of H's words.
NATALIA = {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
                       "May. How many clips did Natalia sell altogether in April and May?",
           "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
                     "altogether in April and May.\n#### 72"}
REWORDED = ("In May she sold half of 48, that is 48 / 2 = 24 clips.\nOver both months she sold 48 + 24 = 72 clips."
            "\n#### 72")


def natalia():
    task = get_task("gsm8k")
    return task, [task.from_record(NATALIA, id="gsm8k/train/0")]


def test_length_counts_words_without_calculator_annotations():
    assert reasoning_words(NATALIA["answer"]) == 21          # the two <<...>> notes are not words of the trace
    assert reasoning_words("48/2 = <<48/2=24>>24") == 3
    assert length_ratio("The answer is 72.", NATALIA["answer"]) == 4 / 21
    assert length_ratio(REWORDED, NATALIA["answer"]) == 28 / 21 and length_ratio("x", "") is None


def test_gsm8k_states_its_answer_only_with_a_statement_not_the_last_number():
    task, problems = natalia()
    one_liner = "Natalia sold 72 clips in total."
    assert task.grade(problems[0], one_liner).correct            # the grader's last-number fallback accepts it ...
    assert not states_answer(task, one_liner)                    # ... but it states no answer
    for stated in ("... so 72 clips.\n#### 72", "She sold 72 clips. The answer is 72.", "Answer: 72",
                   "\\boxed{72}"):
        assert states_answer(task, stated), stated
    assert not states_answer(get_task("math"), "so it is 7") and states_answer("math", "The answer is $7$.")
    assert states_answer(get_task("mbpp"), "def f(x):\n    return x")   # MBPP's answer is the code itself


def test_a_correct_one_line_answer_is_dropped_and_counted():
    task, problems = natalia()
    h = h_records(problems) * 4
    replies = [[tagged("Natalia sold 72 clips altogether.")],       # correct by the last number only
               [tagged("The answer is 72.")],                        # stated, but 4 of H's 21 words
               [tagged(REWORDED)],                                   # H reworded: kept
               [tagged(REWORDED.replace("72", "73"))]]               # wrong
    records, m = paraphrase(h, problems, task, FixedBackend(replies), Sampling())
    assert [r["completion"] for r in records] == [REWORDED] and records[0]["source"]["length_ratio"] == 28 / 21
    assert m["graded_correct"] == 3 and m["kept"] == 1 and m["min_length_ratio"] == 0.5
    assert m["dropped"] == {"no_tags": 0, "unclosed": 0, "empty": 0, "commentary": 0, "unparseable": 0, "wrong_answer": 1,
                            "no_answer_statement": 1, "too_short": 1, "unchanged": 0}
    reasons = {e["reason"]: e for e in m["dropped_examples"]}
    assert reasons["too_short"]["text"] == "The answer is 72." and reasons["too_short"]["length_ratio"] == 4 / 21
    assert reasons["wrong_answer"]["extracted"] == "73" and reasons["no_answer_statement"]["extracted"] == "72"
    hist = m["length_ratio_hist"]
    assert hist["edges"][:3] == [0.0, 0.1, 0.2] and hist["edges"][-1] == 2.0
    assert hist["counts"]["too_short"][1] == 1 and hist["counts"]["correct"][13] == 1   # 0.19 and 1.33
    assert sum(map(sum, hist["counts"].values())) == 4


def test_min_length_ratio_is_the_threshold_and_is_checked():
    task, problems = natalia()
    short = FixedBackend([[tagged("The answer is 72.")]])
    records, m = paraphrase(h_records(problems), problems, task, short, Sampling(), min_length_ratio=0.19)
    assert len(records) == 1                                      # 4/21 is not below 0.19
    records, m = paraphrase(h_records(problems), problems, task, short, Sampling(), min_length_ratio=0.2)
    assert records == [] and m["dropped"]["too_short"] == 1
    for bad in (1.5, -0.1, "0.5", None, True):
        with pytest.raises(ValueError, match="paraphrase.min_length_ratio"):
            paraphrase(h_records(problems), problems, task, FixedBackend([]), Sampling(), min_length_ratio=bad)


def test_the_furthest_sample_names_the_drop_and_the_first_kept_sample_wins():
    task, problems = natalia()
    replies = [[tagged("She sold 73 clips.\n#### 73"), tagged("The answer is 72."), "no tags"]]
    _, m = paraphrase(h_records(problems), problems, task, FixedBackend(replies), Sampling(n=3, temperature=1.0))
    assert m["dropped"]["too_short"] == 1 and sum(m["dropped"].values()) == 1
    assert m["sample_outcomes"] == {"wrong_answer": 1, "too_short": 1, "unclosed": 1}
    replies = [[tagged("The answer is 72."), tagged(REWORDED), tagged(REWORDED + " Done.")]]
    records, _ = paraphrase(h_records(problems), problems, task, FixedBackend(replies), Sampling(n=3, temperature=1.0))
    assert records[0]["source"]["sample"] == 1


def test_ratio_histogram_bins():
    assert ratio_histogram([0.0, 0.05, 0.3, 1.99, 2.0, 7.0], edges=(0.0, 0.1, 0.3, 2.0)) == [2, 0, 2, 2]


def test_a_copy_of_h_is_not_a_paraphrase():
    task, problems = natalia()
    copies = [NATALIA["answer"], NATALIA["answer"].replace("<<48/2=24>>", "").replace("\n", "\n\n  "),
              NATALIA["answer"].replace("sold", "sold exactly", 1)]
    records, m = paraphrase(h_records(problems) * 3, problems, task, FixedBackend([[tagged(c)] for c in copies]),
                            Sampling())
    assert [r["completion"] for r in records] == [copies[2]]      # one word changed: reworded (if barely)
    assert m["dropped"]["unchanged"] == 2 and m["graded_correct"] == 3


def test_a_paraphrase_request_quotes_the_final_answer_line_to_keep():
    """The 0.5B teacher reworded the '#### N' line away in 10 of 12 GSM8K paraphrases; the request quotes it."""
    from sot.paraphrase import answer_line, rewrite_request

    task, problems = gsm8k_problems()
    user, _ = rewrite_request(task, problems[0], problems[0].reference, DEFAULT_TEMPLATE, keep_answer_line=True)
    assert user["content"].endswith("exactly as it is:\n#### 5")
    plain, _ = rewrite_request(task, problems[0], problems[0].reference, DEFAULT_TEMPLATE)
    assert "exactly as it is" not in plain["content"]                 # lm_rewrite: the answer must change
    assert answer_line(get_task("mbpp"), "def f():\n    return 1") is None
    assert answer_line(get_task("math"), "So $x = 2$.\nThus $\\boxed{2}$.") == "Thus $\\boxed{2}$."
    assert answer_line(get_task("countdown"), "Step 1: 1 + 2 = 3\n<answer>1 + 2</answer>") == "<answer>1 + 2</answer>"


def test_a_correct_paraphrase_with_commentary_is_dropped_and_counted():
    task, problems = gsm8k_problems()
    chatty = tagged("Here is the rewritten solution:\n" + h_records(problems)[0]["completion"] + " again")
    records, m = paraphrase(h_records(problems[:1]), problems, task, FixedBackend([[chatty]]), Sampling())
    assert records == [] and m["dropped"]["commentary"] == 1
