"""Prompt format per model: which style each model is prompted in, checked before any work.

Styles (sot.prompts.STYLES): `chat` (the model's chat template, for instruct models), `plain` (our
`Problem: ... Solution:` format for base models, the demo's and the CPU study's), `authors` and `authors-4shot`
(the paper authors' per-task evaluation prompts, stop strings and completion format, sot.authors_style: the
paper preset's base students).

The style belongs to the model, not to a role: an instruct model (the teacher, gemma-2-27b-it) is prompted
through its chat template, a base model (the students) in a `...Solution:` format. params.yaml
declares both with every model:

    models:
      gemma-2-27b-it: {ref: google/gemma-2-27b-it, style: chat}
      qwen2.5-1.5b: {ref: Qwen/Qwen2.5-1.5B, style: plain}

    model_ref(params["models"], "qwen2.5-1.5b")   # -> "Qwen/Qwen2.5-1.5B" (for sot.models / get_backend)
    style_of(params["models"], "qwen2.5-1.5b")    # -> "plain"
    models_in_use(params)                         # -> {model key: [the stages that prompt it]}
    check_params(params)                          # every model in use has a valid entry (no I/O)
    check_chat_templates(params)                  # chat-style models in use have a chat template (tokenizers)

The teacher stages (generate, paraphrase, corrupt with `lm_rewrite`) prompt the teacher (paraphrase: its own
`paraphrase.model` when set); the student stages (distance, sft, evaluate) prompt each student.
"""
from __future__ import annotations

from sot.prompts import STYLES

ENTRY_FIELDS = ("ref", "style")
TEACHER_STAGES = ("generate", "paraphrase", "corrupt")
STUDENT_STAGES = ("distance", "sft", "evaluate")


def model_entry(models: dict, key: str, where: str = "params.yaml") -> dict:
    """The checked `models` entry of `key`: a mapping with exactly a non-empty `ref` and a `style`."""
    if not isinstance(models, dict) or key not in models:
        known = ", ".join(models) if isinstance(models, dict) else "none"
        raise KeyError(f"{where}: model {key!r} is not a key of `models` (known: {known}); add it there")
    entry = models[key]
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: models.{key} is {entry!r}; write it as "
                         f"`{key}: {{ref: {entry if isinstance(entry, str) else '...'}, style: {'|'.join(STYLES)}}}` "
                         "(chat: the model's chat template, for instruct models; plain or authors: base models)")
    unknown = sorted(set(entry) - set(ENTRY_FIELDS))
    if unknown:
        raise ValueError(f"{where}: models.{key} has unknown field(s) {unknown}; the fields are "
                         f"{', '.join(ENTRY_FIELDS)}")
    ref = entry.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"{where}: models.{key}.ref must be a hub id, a local folder or "
                         f"'smollm2-135m-instruct', got {ref!r}")
    style = entry.get("style")
    if style not in STYLES:
        raise ValueError(f"{where}: models.{key}.style must be one of {', '.join(STYLES)} "
                         "(chat: instruct models, through their chat template; plain: base models in our format; "
                         f"authors, authors-4shot: base models in the paper authors' prompts), got {style!r}")
    return entry


def model_ref(models: dict, key: str, where: str = "params.yaml") -> str:
    """What sot.models.resolve / get_backend take for `key` (a hub id, a local folder or the offline default)."""
    return model_entry(models, key, where)["ref"]


def style_of(models: dict, key: str, where: str = "params.yaml") -> str:
    """The prompt style (one of sot.prompts.STYLES) of model `key`."""
    return model_entry(models, key, where)["style"]


def models_in_use(params: dict) -> dict[str, list[str]]:
    """Model key -> the stages that prompt it, from `teacher`, `paraphrase.model`, `corrupt.operator`, `students`."""
    uses: dict[str, list[str]] = {}

    def use(key, stage):
        if not isinstance(key, str):
            raise ValueError(f"params.yaml: the model of stage {stage} must be a key of `models`, got {key!r}")
        uses.setdefault(key, []).append(stage)

    teacher = params.get("teacher")
    use(teacher, "generate")
    use((params.get("paraphrase") or {}).get("model") or teacher, "paraphrase")
    if (params.get("corrupt") or {}).get("operator") == "lm_rewrite":
        use(teacher, "corrupt")
    students = params.get("students")
    if not isinstance(students, list) or not students:
        raise ValueError(f"params.yaml: `students` must be a non-empty list of keys of `models`, got {students!r}")
    for student in students:
        for stage in STUDENT_STAGES:
            use(student, stage)
    return uses


def check_params(params: dict, where: str = "params.yaml") -> dict[str, str]:
    """Model key -> style for every model in use; raises on the first missing or malformed entry (no I/O)."""
    return {key: style_of(params.get("models"), key, f"{where} (used by {', '.join(stages)})")
            for key, stages in models_in_use(params).items()}


def require_chat_template(key: str, ref: str, style: str) -> None:
    """For style `chat`, load only the tokenizer of `ref` and fail unless it has a chat template."""
    if style != "chat":
        return
    from transformers import AutoTokenizer

    from sot.models import resolve

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve(ref))
    except (OSError, ValueError) as e:   # not found, offline, gated, or not a valid hub id
        raise RuntimeError(f"models.{key}: style 'chat' needs the tokenizer of {ref!r} to check its chat template, "
                           f"and it could not be loaded ({e}); give hub access (`hf auth login`, "
                           "HF_HUB_OFFLINE=0) or a local folder as ref") from e
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"models.{key}: style 'chat' but the tokenizer of {ref!r} has no chat template; "
                         f"set `style: plain` for it in params.yaml (or the preset), the base-model format")


def check_chat_templates(params: dict, where: str = "params.yaml") -> dict[str, str]:
    """check_params, then require_chat_template for every chat-style model in use; returns key -> style."""
    styles = check_params(params, where)
    for key, style in styles.items():
        require_chat_template(key, model_ref(params["models"], key, where), style)
    return styles
