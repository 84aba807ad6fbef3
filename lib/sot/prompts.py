"""The one place prompts are formatted, and the answer-format instructions each task's question carries.

A question is the problem text plus a short instruction that makes a teacher's answer gradable. It is
independent of the prompt style; `render` turns it into the text the model sees.
"""
from __future__ import annotations

STYLES = ("plain", "chat")

# Appended to the problem text (after a blank line) to form Problem.question.
GSM8K_INSTRUCTION = ('Solve the problem step by step. End your response with a final line of the form '
                     '"#### <number>", where <number> is the final numeric answer.')
MATH_INSTRUCTION = "Solve the problem step by step. Put your final answer in \\boxed{}."
# Follows the task text; {tests} is the task's assert lines, one per line.
MBPP_INSTRUCTION = ("Your code should pass these tests:\n\n{tests}\n\n"
                    "Write the complete code in one ```python fenced code block.")
# TinyZero-like wording; the grader also requires every number to be used (exactly once).
COUNTDOWN_TEMPLATE = ("Using the numbers {nums}, create an equation that equals {target}. You can use basic "
                      "arithmetic operations (+, -, *, /) and parentheses, and you must use each number exactly "
                      "once. Show your work step by step, then give the final equation in <answer> </answer> "
                      "tags, for example <answer> (1 + 2) / 3 </answer>.")


def render(question: str, style: str, tokenizer=None) -> str:
    """Prompt text for `question`: "plain" -> the authors' base-model format, "chat" -> the chat template."""
    if style == "plain":
        return f"{question}\nSolution:"
    if style == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt style 'chat' needs a tokenizer with a chat template; "
                             "use style 'plain' for base models")
        return tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                             add_generation_prompt=True, tokenize=False)
    raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")
