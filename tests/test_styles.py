"""Prompt format per model (sot.styles): entries, the models each stage prompts, the chat-template check."""
from __future__ import annotations

import pytest

from sot import styles

MODELS = {
    "teacher-it": {"ref": "org/teacher-it", "style": "chat"},
    "base-a": {"ref": "org/base-a", "style": "plain"},
    "base-b": {"ref": "org/base-b", "style": "plain"},
    "writer": {"ref": "org/writer", "style": "chat"},
}


def params(**changes) -> dict:
    p = {"models": MODELS, "teacher": "teacher-it", "students": ["base-a", "base-b"],
         "paraphrase": {"model": None}, "corrupt": {"operator": "perturb_steps"}}
    p.update(changes)
    return p


def test_ref_and_style_come_from_the_models_entry():
    assert styles.model_ref(MODELS, "base-a") == "org/base-a"
    assert styles.style_of(MODELS, "base-a") == "plain"
    assert styles.style_of(MODELS, "teacher-it") == "chat"


@pytest.mark.parametrize("entry, match", [
    ("org/base-a", r"models\.m is 'org/base-a'; write it as `m: \{ref: org/base-a, "
                   r"style: plain\|chat\|authors\|authors-4shot\}`"),
    ({"ref": "org/x"}, r"models\.m\.style must be one of plain, chat.*got None"),
    ({"ref": "org/x", "style": "Chat"}, r"models\.m\.style .*got 'Chat'"),
    ({"ref": "", "style": "plain"}, r"models\.m\.ref must be"),
    ({"ref": "org/x", "style": "plain", "stlye": "chat"}, r"models\.m has unknown field\(s\) \['stlye'\]"),
])
def test_malformed_entries_are_errors_that_say_what_to_write(entry, match):
    with pytest.raises(ValueError, match=match):
        styles.style_of({"m": entry}, "m", "p.yaml")


def test_the_authors_styles_are_valid_for_a_base_model():
    for style in ("authors", "authors-4shot"):
        assert styles.style_of({"m": {"ref": "org/x", "style": style}}, "m") == style


def test_unknown_model_key_names_the_known_ones():
    with pytest.raises(KeyError, match=r"p.yaml: model 'nope' is not a key of `models` \(known: teacher-it, base-a"):
        styles.model_ref(MODELS, "nope", "p.yaml")


def test_teacher_stages_and_student_stages_prompt_their_own_models():
    uses = styles.models_in_use(params())
    assert uses == {"teacher-it": ["generate", "paraphrase"],
                    "base-a": ["distance", "sft", "evaluate"], "base-b": ["distance", "sft", "evaluate"]}
    uses = styles.models_in_use(params(paraphrase={"model": "writer"}, corrupt={"operator": "lm_rewrite"}))
    assert uses["teacher-it"] == ["generate", "corrupt"] and uses["writer"] == ["paraphrase"]


def test_check_params_gives_each_model_its_style_and_names_the_stages_of_a_bad_one():
    assert styles.check_params(params()) == {"teacher-it": "chat", "base-a": "plain", "base-b": "plain"}
    bad = params(models={**MODELS, "base-b": "org/base-b"})
    with pytest.raises(ValueError, match=r"p.yaml \(used by distance, sft, evaluate\): models\.base-b is"):
        styles.check_params(bad, "p.yaml")
    with pytest.raises(ValueError, match="`students` must be a non-empty list"):
        styles.check_params(params(students=[]))
    with pytest.raises(KeyError, match="model 'ghost'"):
        styles.check_params(params(teacher="ghost"))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Two tokenizer-only folders: SmolLM2's (it has a chat template) and the same without its template."""
    from transformers import AutoTokenizer

    from sot.models import OFFLINE_DEFAULT, resolve

    root = tmp_path_factory.mktemp("tokenizers")
    tok = AutoTokenizer.from_pretrained(resolve(OFFLINE_DEFAULT))
    assert tok.chat_template
    tok.save_pretrained(root / "with")
    tok.chat_template = None
    tok.save_pretrained(root / "without")
    return {"with": str(root / "with"), "without": str(root / "without")}


def test_chat_style_needs_a_chat_template(tokenizers):
    styles.require_chat_template("it", tokenizers["with"], "chat")
    with pytest.raises(ValueError, match=r"models\.base: style 'chat' but the tokenizer of .* has no chat template; "
                                         r"set `style: plain`"):
        styles.require_chat_template("base", tokenizers["without"], "chat")
    styles.require_chat_template("base", tokenizers["without"], "plain")


def test_plain_style_loads_nothing_and_an_unloadable_chat_model_is_an_error(tmp_path):
    styles.require_chat_template("m", str(tmp_path / "absent"), "plain")   # no tokenizer is loaded for plain
    with pytest.raises(RuntimeError, match=r"models\.m: style 'chat' needs the tokenizer of .*absent"):
        styles.require_chat_template("m", str(tmp_path / "absent"), "chat")


def test_check_chat_templates_covers_every_model_in_use(tokenizers):
    ok = {"it": {"ref": tokenizers["with"], "style": "chat"}, "base": {"ref": tokenizers["without"], "style": "plain"}}
    p = {"models": ok, "teacher": "it", "students": ["base"]}
    assert styles.check_chat_templates(p) == {"it": "chat", "base": "plain"}
    p["models"] = {**ok, "base": {"ref": tokenizers["without"], "style": "chat"}}
    with pytest.raises(ValueError, match=r"models\.base: style 'chat'"):
        styles.check_chat_templates(p)
