"""The README's grading examples run as written and print what their comments say."""
import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_grading_examples_run_as_written():
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "get_task" in b or "cd.grade" in b]
    assert len(blocks) >= 2
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    printed = out.getvalue().split("\n")
    assert printed[:4] == ["True 7", "None", "True", "False"], printed
