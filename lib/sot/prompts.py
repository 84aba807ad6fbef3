"""The one place prompts are formatted: the plain format and its stop strings, the chat rendering, and the
answer-format instructions each task's question carries.

A question is the problem text plus a short instruction that makes a teacher's answer gradable. It is
independent of the prompt style; `render` turns it into the text the model sees.

The plain format (base models, and every model in the paper preset's `style: plain`) is

    Problem:
    {question}

    Solution:
    <the model's completion starts here, on its own line>

and PLAIN_STOP cuts a completion where the model starts a new problem in that same format ("\\nProblem:"),
or in the "Question:" format base models know from pretraining, so that a run-on such as
"... #### 44\\n\\nProblem:\\nTom has ...\\n\\nSolution:\\n#### 999" is graded on "... #### 44".

What the paper's authors used (github.com/abhranilchandra/Shape-of-Thought, read at commit ccca3bd): their
training scripts (sft.py, 00_full_finetuning_plus_clean.py) format examples with `tasks.math.format_task` and
mask with the completion-only collator on `tasks.math.get_math_response_tokens()` (its ids with the first
token dropped, `[1:]`, the usual trick for a template that begins with a newline); that `tasks` module is not
in the repository, so the exact training text is not recoverable. Their evaluation scripts, which prompt the
fine-tuned base students, use "<instruction>\\n\\nProblem:\\n{problem}\\n\\nSolution:" (MATH/GSM8K, MBPP) and
"...\\nProblem:\\n...\\n\\nSolution:" (Countdown), with stop=["Problem:"] and the completion `.strip()`-ed.
We use the same labels, "Problem:" on its own line before the question and "Solution:" after it, because
that is the only format of theirs that is public and it gives a run-on a marker to cut at. Differences,
and why: our task instruction is part of `question` (after the problem text, as in chat style, so both
styles ask the same thing); the prompt ends with a newline after "Solution:" so that a completion begins at
the start of a line, as the human traces (H) do, and training (prompt and completion tokenised
separately, sot.tokens) sees the same boundary as generation; the stop strings start with a newline so
that "Problem:" inside a line of reasoning does not cut it.

Styles `authors` and `authors-4shot` (sot.authors_style; the paper preset's students) are their evaluation
prompts as published, per task, with their stop strings, and each trace adapted to the completion format those
prompts ask for (`adapt_completion`); they need the task (`render(..., task=)`, `stop_strings(style, task)`).
`plain` stays this project's format: the demo's and the CPU study's.
"""
from __future__ import annotations

# "authors", "authors-4shot": the paper authors' evaluation prompts per task (sot.authors_style); they need the task.
STYLES = ("plain", "chat", "authors", "authors-4shot")

PLAIN_TEMPLATE = "Problem:\n{question}\n\nSolution:\n"
# A completion is cut before the earliest of these (the plain format's next problem, or a pretraining-style one).
PLAIN_STOP = ("\nProblem:", "\nQuestion:")

# Appended to the problem text (after a blank line) to form Problem.question.
# GSM8K: measured on the demo teacher (Qwen2.5-Coder-0.5B-Instruct, 12 training problems x 4 samples, T 0.8,
# 256 new tokens): asked for a last line "#### <number>" it wrote that line FIRST and reasoned after it, 5 of 48
# samples correct (5 of 12 problems with a G); with this wording 14 of 48 (6 of 12). The grader reads either form.
GSM8K_INSTRUCTION = 'Think step by step, then give the final answer in the form "The answer is <number>."'
MATH_INSTRUCTION = "Solve the problem step by step. Put your final answer in \\boxed{}."
# Follows the task text; {tests} is the task's assert lines, one per line.
MBPP_INSTRUCTION = ("Your code should pass these tests:\n\n{tests}\n\n"
                    "Write the complete code in one ```python fenced code block.")
# TinyZero-like wording; the grader also requires every number to be used (exactly once).
COUNTDOWN_TEMPLATE = ("Using the numbers {nums}, create an equation that equals {target}. You can use basic "
                      "arithmetic operations (+, -, *, /) and parentheses, and you must use each number exactly "
                      "once. Show your work step by step, then give the final equation in <answer> </answer> "
                      "tags, for example <answer> (1 + 2) / 3 </answer>.")


def render_plain(question: str) -> str:
    """The plain-format prompt for `question` (see the module docstring)."""
    return PLAIN_TEMPLATE.format(question=question)


def stop_strings(style: str, task: str | None = None) -> tuple[str, ...]:
    """Stop strings for a prompt style: PLAIN_STOP for "plain"; none for "chat" (the end-of-turn token ends it);
    the authors' list of `task` for the authors styles."""
    if style == "plain":
        return PLAIN_STOP
    if style == "chat":
        return ()
    if style in STYLES:
        from sot import authors_style
        return authors_style.stop_strings(task)
    raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")


def token_style(style: str) -> str:
    """The tokenisation rules a style uses (sot.tokens): "chat" for chat, "plain" (EOS ends a completion) else."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")
    return "chat" if style == "chat" else "plain"


def adapt_completion(completion: str, style: str, task: str | None = None, finished: bool = True) -> str:
    """A trace in the format the style's prompt asks for: unchanged for plain and chat; the authors' format of
    `task` for the authors styles (sot.authors_style.adapt_completion; `finished` False: cut by the length limit)."""
    if style in ("plain", "chat"):
        return completion
    if style in STYLES:
        from sot import authors_style
        return authors_style.adapt_completion(task, completion, finished)
    raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")


def render_messages(messages: list, tokenizer) -> str:
    """Chat messages through the tokenizer's chat template, with the assistant's generation prompt.

    When the last message is the assistant's, its text is a prefix the reply continues (the template's
    `continue_final_message`): sot.paraphrase opens the <rewritten> tag this way, so the model writes inside it."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt style 'chat' needs a tokenizer with a chat template; "
                         "use style 'plain' for base models")
    messages = list(messages)
    if messages and messages[-1].get("role") == "assistant":
        return tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def render(question: str, style: str, tokenizer=None, task: str | None = None) -> str:
    """Prompt text for `question`: "plain" -> PLAIN_TEMPLATE, "chat" -> the tokenizer's chat template,
    "authors"/"authors-4shot" -> the authors' prompt of `task` (sot.authors_style.prompt)."""
    if style == "plain":
        return render_plain(question)
    if style == "chat":
        return render_messages([{"role": "user", "content": question}], tokenizer)
    if style in STYLES:
        from sot import authors_style
        return authors_style.prompt(task, question, style)
    raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")
