"""sot.distance.completion_nll: hand computation, batching invariance, own-greedy vs random text."""
from __future__ import annotations

import math
import random

import pytest

from sot.distance import completion_nll
from sot.prompts import render


@pytest.fixture(scope="module")
def model_tok(tiny_model):
    from sot.models import load
    return load(tiny_model)


RECORDS = [{"id": "a", "prompt": "What is 2+2?", "completion": " 2+2=4. The answer is 4."},
           {"id": "b", "prompt": "Name a colour.", "completion": " Blue."},
           {"id": "c", "prompt": "Count to five.", "completion": " one two three four five, done"}]


@pytest.mark.parametrize("style", ["plain", "chat"])
def test_matches_a_hand_computation(model_tok, style):
    import torch
    model, tok = model_tok
    record = RECORDS[0]
    prompt_ids = tok(render(record["prompt"], style, tok), add_special_tokens=False).input_ids
    completion_ids = tok(record["completion"], add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    nlls = [-logprobs[len(prompt_ids) + k - 1, t].item() for k, t in enumerate(completion_ids)]
    expected = sum(nlls) / len(nlls)
    got = completion_nll(model_tok, [record], style, render=render, progress=False)
    assert got["n_tokens"] == len(completion_ids)   # completion + EOS, prompt not scored
    assert got["nll"] == pytest.approx(expected, rel=1e-5)
    assert got["ppl"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_batching_and_padding_do_not_change_the_scores(model_tok):
    one = completion_nll(model_tok, RECORDS, "plain", batch_size=1, render=render, progress=False)
    three = completion_nll(model_tok, RECORDS, "plain", batch_size=3, render=render, progress=False)
    assert [r["id"] for r in three["records"]] == ["a", "b", "c"]   # input order kept
    for a, b in zip(one["records"], three["records"]):
        assert a["nll"] == pytest.approx(b["nll"], rel=1e-4) and a["n_tokens"] == b["n_tokens"]
    weighted = sum(r["nll"] * r["n_tokens"] for r in three["records"]) / three["n_tokens"]
    assert three["nll"] == pytest.approx(weighted)
    per = three["per_record"]
    assert per["min"] <= per["q1"] <= per["median"] <= per["q3"] <= per["max"]
    assert per["median"] == pytest.approx(sorted(r["nll"] for r in three["records"])[1])


def test_own_greedy_outputs_score_lower_than_random_text(tiny_model):
    """The offline SmolLM2-135M (already converted for tiny_model's tokenizer): a real distribution to be near."""
    import torch
    from sot.models import OFFLINE_DEFAULT, load
    model, tok = load(OFFLINE_DEFAULT)
    prompts = [r["prompt"] for r in RECORDS]
    enc = tok([render(p, "plain") for p in prompts], return_tensors="pt", padding=True)   # left padding
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    own = [{"id": f"own{i}", "prompt": p, "completion": tok.decode(out[i, enc.input_ids.shape[1]:],
                                                                   skip_special_tokens=True)}
           for i, p in enumerate(prompts)]
    words = "apple river seven blue quickly under theorem coffee paper north".split()
    rng = random.Random(0)
    noise = [{"id": f"rand{i}", "prompt": p, "completion": " " + " ".join(rng.choice(words) for _ in range(10))}
             for i, p in enumerate(prompts)]
    own_nll = completion_nll((model, tok), own, "plain", render=render, progress=False)["nll"]
    noise_nll = completion_nll((model, tok), noise, "plain", render=render, progress=False)["nll"]
    assert own_nll < 0.5 * noise_nll, (own_nll, noise_nll, own)


def test_accepts_a_model_reference(tiny_model, model_tok):
    by_ref = completion_nll(tiny_model, RECORDS[:1], "plain", render=render, progress=False)
    by_pair = completion_nll(model_tok, RECORDS[:1], "plain", render=render, progress=False)
    assert by_ref["nll"] == pytest.approx(by_pair["nll"], rel=1e-5)


def test_truncated_completions_are_scored_without_an_end_token(model_tok):
    """A completion cut by the length limit did not end: no synthetic EOS is scored after it, and it is counted."""
    _, tok = model_tok
    done = dict(RECORDS[0], source={"finish_reason": "stop"})
    cut = dict(RECORDS[0], id="cut", source={"kind": "student greedy", "finish_reason": "length", "truncated": True})
    got = completion_nll(model_tok, [done, cut], "plain", render=render, progress=False)
    n_completion = len(tok(RECORDS[0]["completion"], add_special_tokens=False).input_ids)
    assert [r["n_tokens"] for r in got["records"]] == [n_completion + 1, n_completion]
    assert got["n_unterminated"] == 1 and got["n_tokens"] == 2 * n_completion + 1
    alone = completion_nll(model_tok, [done], "plain", render=render, progress=False)
    assert got["records"][0]["nll"] == pytest.approx(alone["records"][0]["nll"], rel=1e-5)
    assert alone["n_unterminated"] == 0
