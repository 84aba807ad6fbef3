"""sot.sft: exact completion-only mask, collator, split, budgets, and short real trainings of the tiny model."""
from __future__ import annotations

import json
import warnings
import sys

import pytest

from sot.sft import MEASURED_FIELDS, SFTConfig, PAPER_PRESET, build_dataset, build_example, load_trained, plan_steps, train
from sot.prompts import render
from sot.sft.data import IGNORE, RightPadCollator, split_validation


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model)


def labelled(example):
    return [t for t in example["labels"] if t != IGNORE]


@pytest.mark.parametrize("style", ["plain", "chat"])
def test_mask_is_exactly_the_completion_plus_eos(tok, style):
    prompt = render("What is 2+3?", style, tok)
    completion = " 2+3=5.\nThe answer is \\boxed{5}."
    ex = build_example(tok, prompt, completion, max_length=512)
    n_prompt = len(tok(prompt, add_special_tokens=False).input_ids)
    assert ex["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert IGNORE not in ex["labels"][n_prompt:]
    assert tok.decode(labelled(ex)) == completion + tok.eos_token
    assert labelled(ex)[-1] == tok.eos_token_id
    assert tok.decode(ex["input_ids"]) == prompt + completion + tok.eos_token
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])


@pytest.mark.parametrize("style", ["plain", "chat"])
def test_default_render_is_sot_prompts(tok, style):
    record = {"id": "q", "prompt": "What is 2+3?", "completion": " 5"}
    default = build_dataset([record], tok, style, 128).examples[0]   # render = sot.prompts.render
    assert default == build_example(tok, render(record["prompt"], style, tok), record["completion"], 128)


def test_bos_only_when_the_tokenizer_adds_one(tiny_model):
    from transformers import AutoTokenizer
    plain = AutoTokenizer.from_pretrained(tiny_model)
    assert build_example(plain, "Q\nSolution:", " a", 64)["input_ids"][0] != plain.bos_token_id
    bos_tok = AutoTokenizer.from_pretrained(tiny_model)
    bos_tok.add_bos_token = True
    ex = build_example(bos_tok, "Q\nSolution:", " a", 64)
    assert ex["input_ids"][0] == bos_tok.bos_token_id and ex["input_ids"][1] != bos_tok.bos_token_id
    already = build_example(bos_tok, bos_tok.bos_token + "Q\nSolution:", " a", 64)   # template wrote BOS itself
    assert already["input_ids"].count(bos_tok.bos_token_id) == 1
    assert ex["labels"][0] == IGNORE and bos_tok.decode(labelled(ex)) == " a" + bos_tok.eos_token


def test_unfinished_completion_has_no_end_token_and_style_picks_it(tok):
    prompt = render("What is 2+3?", "plain", tok)
    cut = build_example(tok, prompt, " 2+3", 64, finished=False)
    assert labelled(cut) == tok(" 2+3", add_special_tokens=False).input_ids     # no EOS: it did not end
    chat = build_example(tok, render("What is 2+3?", "chat", tok), " 5", 64, style="chat")
    assert labelled(chat)[-1] == tok.convert_tokens_to_ids("<|im_end|>")         # SmolLM2's end of turn
    with pytest.raises(ValueError, match="unknown prompt style"):
        build_example(tok, prompt, " 5", 64, style="fewshot")


def test_truncation_is_counted_and_prompt_only_examples_dropped(tok):
    records = [{"id": "a", "prompt": "Short?", "completion": " yes " * 100},
               {"id": "b", "prompt": "word " * 200, "completion": " no"},
               {"id": "c", "prompt": "Ok?", "completion": " fine"}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tset = build_dataset(records, tok, "plain", max_length=32, render=render)
    assert (tset.n_truncated, tset.n_dropped, tset.ids) == (1, 1, ["a", "c"])
    assert len(tset.examples[0]["input_ids"]) == 32 and len(tset.examples[0]["labels"]) == 32
    assert any("truncated" in str(w.message) for w in caught) and any("dropped" in str(w.message) for w in caught)


def test_bad_record_names_index_and_field(tok):
    with pytest.raises(ValueError, match=r"record 1 \(id='x'\) field 'completion'"):
        build_dataset([{"prompt": "a", "completion": "b"}, {"id": "x", "prompt": "q"}], tok, "plain", 64,
                      render=render)


def test_collator_right_pads():
    batch = RightPadCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
                                              {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]


def test_validation_split_is_seeded_and_grouped_by_problem():
    records = [{"id": f"p{i // 2}", "prompt": "q", "completion": str(i)} for i in range(20)]
    train_a, val_a = split_validation(records, 0.2, seed=1)
    train_b, val_b = split_validation(records, 0.2, seed=1)
    assert val_a == val_b and len(val_a) == 4 and len(train_a) == 16
    assert not {r["id"] for r in val_a} & {r["id"] for r in train_a}
    assert split_validation(records, 0.2, seed=2)[1] != val_a


def test_token_budget_plans_equal_tokens_for_sets_of_different_sizes():
    cfg = SFTConfig(model="m", budget="tokens", budget_value=100_000, per_device_batch_size=4, grad_accum=2)
    small, large = plan_steps([50] * 30, cfg), plan_steps([200, 80] * 500, cfg)
    assert small["max_steps"] != large["max_steps"]
    for plan in (small, large):
        assert abs(plan["planned_tokens"] - 100_000) <= plan["tokens_per_step"] / 2
    epochs = plan_steps([10] * 30, SFTConfig(model="m", budget="epochs", epochs=2, per_device_batch_size=4))
    assert epochs["steps_per_epoch"] == 8 and epochs["max_steps"] == 16   # 8 micro-batches, the last one short


def test_paper_preset_is_expressible():
    cfg = SFTConfig(model="m", **PAPER_PRESET)
    plan = plan_steps([100] * 640, cfg, world_size=2)
    assert plan["grad_accum"] == 4 and plan["examples_per_step"] == 64 and plan["max_steps"] == 100
    with pytest.raises(ValueError, match="effective_batch_size"):
        plan_steps([1] * 10, cfg, world_size=3)
    with pytest.raises(ValueError, match="SFTConfig.method"):
        SFTConfig(model="m", method="qlora")
    with pytest.raises(ValueError, match="unknown field"):
        SFTConfig.from_dict({"model": "m", "learning_rate": 1})


def test_trl_trains_on_our_exact_labels(tiny_model, tok, tmp_path):
    from sot.sft.trl_backend import make_trainer
    records = [{"id": "a", "prompt": "Q one?", "completion": " one"}, {"id": "b", "prompt": "Q2?", "completion": " a b c"}]
    tset = build_dataset(records, tok, "plain", 64, render=render)
    cfg = SFTConfig(model=tiny_model, budget="steps", budget_value=1, per_device_batch_size=2)
    trainer = make_trainer(cfg, tiny_model, tok, tset, None, plan_steps(tset.token_counts, cfg), tmp_path,
                           False, "float32")
    assert trainer.train_dataset["labels"] == [e["labels"] for e in tset.examples]
    assert trainer.train_dataset["input_ids"] == [e["input_ids"] for e in tset.examples]
    batch = next(iter(trainer.get_train_dataloader()))
    expected = RightPadCollator(tok.pad_token_id)(tset.examples)["labels"].tolist()
    assert sorted(batch["labels"].tolist()) == sorted(expected)


def _greedy(model, tok, prompt, n=24):
    import torch
    enc = tok([prompt], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, enc.input_ids.shape[1]:].tolist()


def test_full_sft_lowers_loss_and_learns_to_stop(tiny_model, tmp_path):
    completion = " 3+4=7. The answer is 7."
    records = [{"id": f"p{i}", "prompt": "Tom has 3 apples and gets 4 more. How many?",
                "completion": completion} for i in range(1)]
    cfg = SFTConfig(model=tiny_model, method="full", lr=1e-2, lr_scheduler="constant", budget="steps",
                    budget_value=30, per_device_batch_size=1, logging_steps=5)
    summary = train(records, cfg, tmp_path / "full", render=render)
    losses = [r["loss"] for r in summary["history"] if "loss" in r]
    assert summary["backend"] == "trl" and summary["steps"] == 30 and summary["history"][-1]["step"] == 30
    assert losses[-1] < 0.2 * losses[0]
    saved = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    assert saved["tokens"] == summary["tokens"] > 0 and not list(tmp_path.glob(".*partial"))
    # timings stay out of the folder (they are in the returned summary): a rerun writes the same bytes
    assert "train_seconds" in summary and not set(MEASURED_FIELDS) & set(saved)
    model, tok = load_trained(tmp_path / "full")
    generated = _greedy(model, tok, render(records[0]["prompt"], "plain"))
    assert tok.eos_token_id in generated
    assert tok.decode(generated[:generated.index(tok.eos_token_id)]) == completion


def test_precision_and_end_token_switches_are_checked_and_resolved(tok):
    from sot.sft.config import resolve_bf16, resolve_model_dtype
    pure = SFTConfig(model="m", method="full", precision="pure_bf16")
    assert resolve_model_dtype(pure, resolve_bf16(pure)) == "bfloat16" and resolve_bf16(pure) is True
    mixed = SFTConfig(model="m", method="full", bf16=True)
    assert resolve_model_dtype(mixed, resolve_bf16(mixed)) == "float32"          # master weights stay float32
    with pytest.raises(ValueError, match="pure_bf16.*model_dtype='float32'"):
        SFTConfig(model="m", precision="pure_bf16", model_dtype="float32")
    with pytest.raises(ValueError, match="SFTConfig.precision"):
        SFTConfig(model="m", precision="bf16")
    with pytest.raises(ValueError, match="learn_end_token"):
        SFTConfig(model="m", learn_end_token="no")
    record = {"id": "q", "prompt": "What is 2+3?", "completion": " 5"}
    without = build_dataset([record], tok, "plain", 64, end_token=False).examples[0]
    assert labelled(without) == tok(" 5", add_special_tokens=False).input_ids    # nothing after the completion
    assert labelled(build_dataset([record], tok, "plain", 64).examples[0])[-1] == tok.eos_token_id


def test_a_student_trained_without_the_end_token_does_not_stop(tiny_model, tmp_path):
    """sft.learn_end_token false (the authors' setup): the same run as test_full_sft_lowers_loss_and_learns_to_stop
    memorises the completion but never emits EOS after it; only a stop string could end its output."""
    completion = " 3+4=7. The answer is 7."
    records = [{"id": "p0", "prompt": "Tom has 3 apples and gets 4 more. How many?", "completion": completion}]
    cfg = SFTConfig(model=tiny_model, method="full", lr=1e-2, lr_scheduler="constant", budget="steps",
                    budget_value=30, per_device_batch_size=1, logging_steps=5, learn_end_token=False)
    train(records, cfg, tmp_path / "no-end", render=render)
    model, tok = load_trained(tmp_path / "no-end")
    generated = _greedy(model, tok, render(records[0]["prompt"], "plain"), n=40)
    assert tok.decode(generated).startswith(completion) and tok.eos_token_id not in generated


def test_lora_trains_and_saves_an_adapter(tiny_model, tmp_path):
    records = [{"id": "a", "prompt": "Say hi.", "completion": " hi there"}]
    cfg = SFTConfig(model=tiny_model, method="lora", lora_r=8, lora_alpha=16, lr=5e-3, budget="steps",
                    budget_value=8, per_device_batch_size=1, logging_steps=1, style="chat")
    summary = train(records, cfg, tmp_path / "lora", render=render)
    losses = [r["loss"] for r in summary["history"] if "loss" in r]
    assert losses[-1] < losses[0]
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "model.safetensors").exists()
    model, _ = load_trained(tmp_path / "lora")
    assert type(model).__name__ == "PeftModelForCausalLM"


def test_token_budget_trains_about_equal_tokens(tiny_model, tmp_path):
    short = [{"id": f"s{i}", "prompt": f"Q{i}?", "completion": " a b c"} for i in range(3)]
    long = [{"id": f"l{i}", "prompt": f"Question number {i}?", "completion": " a b c d e f g h i j"} for i in range(12)]
    tokens = []
    for name, records in (("short", short), ("long", long)):
        cfg = SFTConfig(model=tiny_model, method="full", lr=1e-3, budget="tokens", budget_value=200,
                        per_device_batch_size=2, logging_steps=100)
        summary = train(records, cfg, tmp_path / name, render=render)
        # the budget counts loss-bearing tokens (completion + end), realised, not just planned
        assert abs(summary["completion_tokens"] - 200) <= summary["plan"]["tokens_per_step"]
        assert summary["tokens"] > summary["completion_tokens"]          # the prompts are read, not learned
        tokens.append((summary["completion_tokens"], summary["steps"]))
    assert tokens[0][1] > tokens[1][1]   # fewer tokens per example -> more steps


def test_best_val_checkpoint_is_the_lowest_validation_loss(tiny_model, tmp_path):
    from sot.distance import completion_nll

    train_records = [{"id": "t0", "prompt": "Name the letters.", "completion": " A B C D E F"}]
    val_records = [{"id": "v0", "prompt": "Name the letters.", "completion": " A B X Y"}]
    cfg = SFTConfig(model=tiny_model, method="full", lr=1e-2, lr_scheduler="constant", budget="steps",
                    budget_value=16, per_device_batch_size=1, logging_steps=2, eval_steps=2, checkpoint="best_val")
    summary = train(train_records, cfg, tmp_path / "best", val_records=val_records, render=render)
    vals = {r["step"]: r["val_loss"] for r in summary["history"] if "val_loss" in r}
    best_step = min(vals, key=vals.get)
    assert len(vals) == 8 and summary["checkpoint"]["step"] == best_step
    assert best_step != 16, f"validation loss never rose, the test cannot tell best from final: {vals}"
    scored = completion_nll(str(tmp_path / "best"), val_records, "plain", render=render, progress=False)
    assert scored["nll"] == pytest.approx(vals[best_step], rel=1e-4)
    assert scored["nll"] != pytest.approx(vals[16], rel=1e-3)


def test_best_val_without_validation_is_an_error(tiny_model, tmp_path):
    cfg = SFTConfig(model=tiny_model, budget="steps", budget_value=1, checkpoint="best_val")
    with pytest.raises(ValueError, match="needs a validation split"):
        train([{"id": "a", "prompt": "q", "completion": "a"}], cfg, tmp_path / "x", render=render)


def test_trl_backend_refuses_a_process_where_unsloth_was_imported(monkeypatch):
    import types

    from sot.sft import choose_backend
    assert choose_backend("trl") == ("trl", "requested")
    monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))
    with pytest.raises(RuntimeError, match="unsloth was already imported.*fresh process"):
        choose_backend("trl")
    with pytest.raises(RuntimeError, match="unsloth was already imported"):
        choose_backend("auto")   # no CUDA here: auto picks trl, which is refused the same way


# ---- resuming (sot.sft.resume); the kill tests are in tests/test_resume.py -------------------------------------

def test_only_complete_checkpoints_are_resumed_and_old_ones_pruned(tmp_path):
    from sot.sft.resume import checkpoints, is_complete, mark_complete, prune, resume_point

    def checkpoint(step, complete=True):
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        (path / "optimizer.pt").write_bytes(b"x" * step)
        (path / "trainer_state.json").write_text("{}")
        if complete:
            mark_complete(path, step)
        return path

    first, second, torn, half = checkpoint(2), checkpoint(4), checkpoint(6), checkpoint(8, complete=False)
    (torn / "optimizer.pt").write_bytes(b"x")          # a file changed after the commit: not trusted
    assert [is_complete(p) for p in (first, second, torn, half)] == [True, True, False, False]
    assert resume_point(tmp_path) == second
    assert [s for s, _ in checkpoints(tmp_path)] == [2, 4]
    assert prune(tmp_path, {second}) == [first] and [s for s, _ in checkpoints(tmp_path)] == [4]
    assert resume_point(tmp_path / "absent") is None


def test_fingerprint_ignores_save_every_but_not_data_or_settings(tok):
    from sot.sft.resume import run_manifest

    tset = build_dataset([{"id": "a", "prompt": "Q?", "completion": " a"}], tok, "plain", 32, render=render)
    other = build_dataset([{"id": "a", "prompt": "Q?", "completion": " b"}], tok, "plain", 32, render=render)

    def manifest(cfg, data=tset):
        return run_manifest(cfg, "trl", 1, data, None, False, "float32", "cpu", {"torch": "x"})

    cfg = SFTConfig(model="m", save_every=5)
    assert manifest(cfg) == manifest(SFTConfig(model="m", save_every=7))
    assert manifest(cfg) != manifest(SFTConfig(model="m", lr=1e-3)) and manifest(cfg) != manifest(cfg, other)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="save_every"):
            SFTConfig(model="m", save_every=bad)


def test_best_val_resumed_after_a_crash_picks_the_same_checkpoint(tiny_model, tmp_path):
    """checkpoint='best_val' with resumable checkpoints: a run that dies and is rerun evaluates, keeps and loads
    back the same best model as an uninterrupted one. The periodic save due at step 10 (an evaluation step that
    is not a new best, where the Trainer would drop it) is made at step 11, and the rerun starts there."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 12:
                raise KeyboardInterrupt("simulated crash")

    train_records = [{"id": "t0", "prompt": "Name the letters.", "completion": " A B C D E F"}]
    val_records = [{"id": "v0", "prompt": "Name the letters.", "completion": " A B X Y"}]
    cfg = SFTConfig(model=tiny_model, method="full", lr=1e-2, lr_scheduler="constant", budget="steps",
                    budget_value=12, per_device_batch_size=1, logging_steps=1, eval_steps=2, checkpoint="best_val",
                    save_every=2)
    kw = dict(val_records=val_records, render=render)
    whole = train(train_records, cfg, tmp_path / "whole", checkpoint_dir=tmp_path / "ck-whole", **kw)
    best = whole["checkpoint"]["step"]
    assert best not in (10, 12), f"validation loss never rose after step 8, nothing to tell apart: {whole['history']}"
    with pytest.raises(KeyboardInterrupt):
        train(train_records, cfg, tmp_path / "again", checkpoint_dir=tmp_path / "ck", callbacks=[Crash()], **kw)
    (run,) = (tmp_path / "ck").iterdir()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == sorted({f"checkpoint-{best}", "checkpoint-11"})
    again = train(train_records, cfg, tmp_path / "again", checkpoint_dir=tmp_path / "ck", **kw)
    assert again["resume"]["resumed_from_step"] == 11 and again["checkpoint"] == whole["checkpoint"]
    assert [r.get("val_loss") for r in again["history"]] == [r.get("val_loss") for r in whole["history"]]
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "again"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    for ck in ("ck", "ck-whole"):      # the finished run stays (for reuse), its checkpoints are gone
        (run,) = (tmp_path / ck).iterdir()
        assert not list(run.glob("checkpoint-*")) and (run / "final" / "model.safetensors").exists()


def test_a_finished_run_is_reused_and_a_changed_one_retrained(tiny_model, tmp_path):
    """The sft stage of a (task, student) group reruns every set when one changes: the unchanged ones must come
    back byte for byte from the finished run, without training; another setting trains afresh."""
    records = [{"id": f"p{i}", "prompt": f"What is {i} + 1?", "completion": f" {i}+1={i + 1}. The answer is {i + 1}."}
               for i in range(4)]
    cfg = SFTConfig(model=tiny_model, method="lora", lr=1e-3, budget="steps", budget_value=2,
                    per_device_batch_size=2, logging_steps=1)
    first = train(records, cfg, tmp_path / "out", render=render, checkpoint_dir=tmp_path / "ck")
    assert first["resume"]["resumed_from_step"] is None and "reused_finished_run" not in first["resume"]
    kept = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    import shutil
    shutil.rmtree(tmp_path / "out")                      # what DVC does before it reruns the stage
    again = train(records, cfg, tmp_path / "out", render=render, checkpoint_dir=tmp_path / "ck")
    assert again["resume"]["reused_finished_run"].endswith("final")
    assert again["history"] == first["history"] and again["final_loss"] == first["final_loss"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == kept
    other = train(records, SFTConfig.from_dict({**cfg.to_dict(), "lr": 2e-3}), tmp_path / "out", render=render,
                  checkpoint_dir=tmp_path / "ck")
    assert "reused_finished_run" not in other["resume"] and other["history"] != first["history"]
    assert len(list((tmp_path / "ck").iterdir())) == 1   # only the latest settings' run is kept


def test_a_rerun_writes_a_byte_identical_folder(tiny_model, tmp_path):
    """What DVC hashes: the same settings and data must give the same bytes, or every evaluation downstream of a
    retrained (e.g. run-cache-less) set reruns. Timings are the only run-to-run difference, and stay out."""
    records = [{"id": f"p{i}", "prompt": f"What is {i} + 1?", "completion": f" {i}+1={i + 1}. The answer is {i + 1}."}
               for i in range(4)]
    cfg = SFTConfig(model=tiny_model, method="lora", lr=1e-3, budget="steps", budget_value=3,
                    per_device_batch_size=2, logging_steps=1)
    out, first = tmp_path / "run", tmp_path / "first"
    train(records, cfg, out, render=render)
    out.rename(first)
    train(records, cfg, out, render=render)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in out.iterdir()) and "train_summary.json" in names
    assert [n for n in names if (first / n).read_bytes() != (out / n).read_bytes()] == []
    assert "training_args.bin" not in names     # a pickle of the Trainer's output path: not the model's bytes


def test_adapter_config_is_written_in_one_order(tmp_path):
    """PEFT lists target_modules in set order, which differs between processes (string hashing)."""
    from sot.sft import canonical_adapter_config
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "target_modules": ["v_proj", "q_proj", "o_proj"],
                                                              "modules_to_save": None}))
    canonical_adapter_config(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text()) == {
        "modules_to_save": None, "r": 16, "target_modules": ["o_proj", "q_proj", "v_proj"]}
    canonical_adapter_config(tmp_path / "nothing")   # no adapter (full fine-tuning): nothing to do
