"""The `authors` prompt style: the paper authors' evaluation prompts, stop strings and generation limits, and
the completion format that agrees with them, per task.

Source: github.com/abhranilchandra/Shape-of-Thought at commit ccca3bd (read, not copied): eval_math_gsm8k.py
(MATH and GSM8K: one template for both), eval_countdown.py, gen_plus_eval_codegen_mbpp.py. Their README runs
every script zero-shot (`--shot_mode zero_shot`); style `authors` is that. Style `authors-4shot` uses the
4-shot Minerva prompt of eval_math_gsm8k.py (its argparse default) for MATH and GSM8K; Countdown and MBPP stay
zero-shot under it (their README runs Countdown zero-shot; the MBPP script has no few-shot prompt).

    prompt("gsm8k", problem.question)            # the authors' prompt text; ends with "Solution:" (no newline)
    stop_strings("mbpp")                          # their vLLM stop list for that script
    MAX_NEW_TOKENS["countdown"]                   # their generation limit: 4096
    generation_limit("authors", "mbpp")           # evaluate.max_new_tokens: authors (the paper preset) -> 1024
    adapt_completion("math", problem.reference)   # a trace in the format their prompt asks for

The prompt is built from Problem.question (what every training record carries as `prompt`): the problem text
is recovered by removing our task instruction (sot.prompts), exactly; Countdown's numbers and target and
MBPP's first assert are read back the same way. A question not in our format is an error, not a guess.

Completion format (`adapt_completion`, applied wherever a trace becomes a training or scoring example, and
idempotent, so a student's own authors-style output is left as it is):
- MATH, GSM8K: the trace, then a last line "Final Answer: The final answer is $X$. I hope it is correct."
  (their prompt asks for it; the Minerva examples put it after a solution ending in \\boxed{X}). X is the
  trace's own final answer as the strict grader reads it (sot.tasks.answers; for GSM8K the number it
  compares, so "$1,000" is 1000), so a W trace keeps its wrong answer. GSM8K's "#### N" line is replaced by that sentence. A trace that already has it, or has no answer
  at all (some flawed traces), is left unchanged.
- MBPP: bare code (their prompt: "ONLY Python code (no backticks ...)"): the code of a fenced trace
  (sot.tasks.mbpp.extract_code), else the trace.
- Countdown: the text after the last </answer> is dropped, because their grader reads only the last line.
Every adapted completion is stripped (their evaluation strips outputs) and starts on a new line after the
prompt's "Solution:" ("\\n", as in the 4-shot examples); a completion that already starts with whitespace
keeps it (a student's own sample is scored as generated).
"""
from __future__ import annotations

import ast
import re

from sot.prompts import COUNTDOWN_TEMPLATE, GSM8K_INSTRUCTION, MATH_INSTRUCTION, MBPP_INSTRUCTION

AUTHORS_STYLES = ("authors", "authors-4shot")
TASKS = ("gsm8k", "math", "countdown", "mbpp")

MATH_EXPERT = ('You are a math expert. I am going to give you a math Problem that you need to solve. When you '
               'respond, respond only with the Solution, thinking step by step. At the end of the Solution, '
               'when you give your final answer, write it in the form "Final Answer: The final answer is '
               '$answer$. I hope it is correct."')
FINAL_ANSWER = "Final Answer: The final answer is ${answer}$. I hope it is correct."
COUNTDOWN_EXPERT = ("You are a math expert. I am going to give you a Problem that you need to solve. When you "
                    "respond, respond with the Solution, thinking step by step. And return the final answer in "
                    "<answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.")
COUNTDOWN_PROBLEM = ("Using the numbers {nums}, create an equation that equals {target}. You can use basic "
                     "arithmetic operations (+, -, *, /) and each number can only be used once. Do not use any "
                     "other operations or numbers.")
MBPP_EXPERT = ("You are an expert Python programmer.\n"
               "I will give you a programming task description. Your job is to write a correct, efficient, and "
               "clean Python solution. Start directly with the coding solution.\n\n"
               "Requirements:\n"
               "- Use only the Python standard library.\n"
               "- Your code must strictly satisfy the provided assertion.\n"
               "- Respond with ONLY Python code (no backticks, no comments, no explanations).\n")

# The Minerva 4-shot examples of eval_math_gsm8k.py (Lewkowycz et al. 2022): (problem, solution, final answer).
MINERVA_SHOTS = (
    ("Find the domain of the expression $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.",
     "The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and "
     "$5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives "
     "$x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.", "[2,5)"),
    ("If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$",
     "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = "
     "\\boxed{24}.$", "24"),
    ("Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many "
     "times must Terrell lift them in order to lift the same total weight?",
     "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of "
     "weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of "
     "$2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$: "
     "\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}", "16"),
    ("If the system of equations \\begin{align*} 6x-4y&=a,\\\\ 6y-9x &=b. \\end{align*}has a solution $(x, y)$ "
     "where $x$ and $y$ are both nonzero, find $\\frac{a}{b},$ assuming $b$ is nonzero.",
     "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n$6y-9x=-\\frac{3}{2}a.$Since we also "
     "know that $6y-9x=b$, we have\n$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$",
     "-\\frac{2}{3}"),
)

# Their vLLM SamplingParams: `stop` and `max_tokens` per script (temperature 0, as ours).
STOP = {"gsm8k": ("Problem:",), "math": ("Problem:",), "countdown": ("Problem:",),
        "mbpp": ("Problem:", "<end_of_turn>", "User:", "Observation:", "\nclass", "\ndef test", "\nif __name__")}
MAX_NEW_TOKENS = {"gsm8k": 2048, "math": 2048, "countdown": 4096, "mbpp": 1024}

_FINAL = re.compile(r"Final Answer: The final answer is ")
_HASHES_LINE = re.compile(r"\n?[ \t]*####[ \t]*(\S[^\n]*?)[ \t]*\Z")
_COUNTDOWN = re.compile(re.escape(COUNTDOWN_TEMPLATE).replace(re.escape("{nums}"), r"(\[[^\]]*\])")
                        .replace(re.escape("{target}"), r"(-?\d+)") + r"\Z")
_MBPP_HEAD, _MBPP_TAIL = MBPP_INSTRUCTION.split("{tests}")


def is_authors(style: str) -> bool:
    return style in AUTHORS_STYLES


def _check(task: str, style: str = "authors") -> None:
    if task not in TASKS:
        raise ValueError(f"prompt style {style!r} needs the task (one of {', '.join(TASKS)}), got {task!r}")
    if style not in AUTHORS_STYLES:
        raise ValueError(f"unknown authors style {style!r}; valid: {', '.join(AUTHORS_STYLES)}")


def _strip_suffix(question: str, suffix: str, task: str) -> str:
    if not question.endswith(suffix):
        raise ValueError(f"authors style, task {task}: the question does not end with this project's {task} "
                         f"instruction ({suffix.strip()[:60]!r}...), so its problem text cannot be recovered; "
                         "the prepare stage writes questions in that form (rerun it if they are older)")
    return question[:-len(suffix)]


def first_assert(tests: str) -> str:
    """The first statement of MBPP test lines joined by newlines: the shortest run of lines that parses."""
    lines = tests.split("\n")
    for k in range(1, len(lines) + 1):
        head = "\n".join(lines[:k])
        try:
            ast.parse(head)
        except SyntaxError:
            continue
        return head.strip()
    return lines[0].strip()


def problem_fields(task: str, question: str) -> dict:
    """What the authors' template of `task` is filled with, read back from our Problem.question."""
    _check(task)
    if task in ("gsm8k", "math"):
        instruction = GSM8K_INSTRUCTION if task == "gsm8k" else MATH_INSTRUCTION
        return {"problem": _strip_suffix(question, "\n\n" + instruction, task)}
    if task == "countdown":
        m = _COUNTDOWN.match(question)
        if not m:
            raise ValueError("authors style, task countdown: the question is not this project's Countdown "
                             f"question ({question[:80]!r}...); rerun the prepare stage")
        return {"nums": m[1], "target": m[2]}
    head = "\n\n" + _MBPP_HEAD
    text, sep, rest = question.partition(head)
    if not sep or not rest.endswith(_MBPP_TAIL):
        raise ValueError("authors style, task mbpp: the question is not `<task text>` + this project's MBPP "
                         f"instruction ({question[:80]!r}...); rerun the prepare stage")
    return {"text": text.strip(), "assertion": first_assert(rest[:-len(_MBPP_TAIL)])}


def _math_prompt(problem: str, shots: bool) -> str:
    if not shots:
        return f"{MATH_EXPERT}\n\nProblem:\n{problem}\n\nSolution:"
    examples = "\n\n".join(f"Problem:\n{p}\nSolution:\n{s}\n{FINAL_ANSWER.format(answer=a)}"
                           for p, s, a in MINERVA_SHOTS)
    return f"{MATH_EXPERT}\n\n{examples}\n\n\nProblem:\n{problem}\n\nSolution:"


def prompt(task: str, question: str, style: str = "authors") -> str:
    """The authors' evaluation prompt for a problem of `task` whose Problem.question is `question`."""
    _check(task, style)
    fields = problem_fields(task, question)
    if task in ("gsm8k", "math"):
        return _math_prompt(fields["problem"], style == "authors-4shot")
    if task == "countdown":
        return f"{COUNTDOWN_EXPERT}\nProblem:\n{COUNTDOWN_PROBLEM.format(**fields)}\n\nSolution:"
    return (f"{MBPP_EXPERT}\nProblem:\n{fields['text']}\n\nYour code should satisfy the following assertion:\n"
            f"{fields['assertion']}\n\nSolution:")


def stop_strings(task: str) -> tuple[str, ...]:
    _check(task)
    return STOP[task]


def max_new_tokens(task: str) -> int:
    _check(task)
    return MAX_NEW_TOKENS[task]


def generation_limit(value, task: str):
    """A `max_new_tokens` parameter as params.yaml gives it, with "authors" replaced by the authors' limit of
    `task` (2048 MATH/GSM8K, 4096 Countdown, 1024 MBPP); any other value (a number, "auto") as it is."""
    return max_new_tokens(task) if value == "authors" else value


def _final_answer(task: str, core: str) -> str:
    """GSM8K and MATH: `core` ending in the Final Answer sentence (see the module docstring)."""
    from sot.tasks.answers import extract_answer

    if _FINAL.search(core):
        return core
    hashes = _HASHES_LINE.search(core) if task == "gsm8k" else None
    if hashes:
        core, answer = core[:hashes.start()].rstrip(), hashes[1]
    else:
        answer = extract_answer(core, last_number_fallback=task == "gsm8k")
    if not answer:
        return core
    answer = answer.strip()
    if task == "gsm8k":   # the number the strict grader compares ("$1,000 dollars" -> "1000"; "x = 5" -> "5")
        from sot.tasks.equivalence import after_equals, gsm8k_prediction
        answer = gsm8k_prediction(after_equals(answer, ""))[0].strip()
    if len(answer) > 1 and answer[0] == answer[-1] == "$":
        answer = answer[1:-1].strip()
    sentence = FINAL_ANSWER.format(answer=answer)
    return f"{core}\n{sentence}" if core else sentence


def adapt_completion(task: str, completion: str, finished: bool = True) -> str:
    """`completion` in the format the authors' prompt of `task` asks for (module docstring); idempotent.

    finished=False (the trace was cut by the length limit): only the leading newline; its end stays as cut."""
    _check(task)
    lead = completion[:len(completion) - len(completion.lstrip())] or "\n"
    if not finished:
        return lead + completion.lstrip()
    core = completion.strip()
    if task in ("gsm8k", "math"):
        core = _final_answer(task, core)
    elif task == "mbpp" and "```" in core:
        from sot.tasks.mbpp import extract_code
        core = (extract_code(core) or "").strip() or core
    elif task == "countdown" and "</answer>" in core:
        core = core[:core.rindex("</answer>") + len("</answer>")]
    return lead + core
