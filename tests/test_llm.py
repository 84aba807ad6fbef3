"""sot.llm: transformers backend on the tiny model, the openai backend against a local fake server."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sot.llm import Sample, Sampling, get_backend
from sot.llm.base import prompt_seed, truncate_at_stop
from sot.llm.hf import count_generated

PROMPTS = ["Hello", "What is 2+2? Think step by step and answer carefully please.",
           [{"role": "user", "content": "hi there"}], "a b c d e f g h i j k l m n o p", "Q: 7*6?\nA:"]


@pytest.fixture(scope="module")
def sharp_model(tiny_model, tmp_path_factory):
    """The tiny model with weights x4: peaky attention, so a padding or mask bug changes greedy output
    (with the plain tiny model greedy output ignores the mask; the sampling test catches it there)."""
    import torch
    from sot.models import load

    model, tok = load(tiny_model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(4)
    dest = tmp_path_factory.mktemp("sharp-llama")
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return str(dest)


@pytest.fixture(scope="module")
def hf(tiny_model):
    return get_backend("transformers", tiny_model, batch_size=4)


@pytest.fixture(scope="module")
def hf_one(tiny_model):
    return get_backend("transformers", tiny_model, batch_size=1)


def texts(out):
    return [[s.text for s in row] for row in out]


def test_greedy_batched_equals_one_at_a_time_and_is_deterministic(sharp_model):
    s = Sampling(max_new_tokens=12)
    hf = get_backend("transformers", sharp_model, batch_size=4)
    batched = hf.generate(PROMPTS, s, progress=False)
    assert batched == get_backend("transformers", sharp_model, batch_size=1).generate(PROMPTS, s, progress=False)
    assert batched == hf.generate(PROMPTS, s, progress=False)
    assert all(len(row) == 1 and row[0].n_tokens == 12 and row[0].finish_reason == "length" for row in batched)
    assert len({row[0].text for row in batched}) == len(PROMPTS)      # outputs depend on the prompt


def test_sampling_is_seeded_per_prompt_not_per_batch(hf, hf_one):
    s = Sampling(n=2, temperature=1.0, max_new_tokens=8, seed=1)
    out = hf.generate(PROMPTS, s, progress=False)
    assert [len(r) for r in out] == [2] * len(PROMPTS)
    assert all(len(set(r)) == 2 for r in texts(out))                  # the n samples differ
    assert out == hf_one.generate(PROMPTS, s, progress=False)          # batch size does not matter
    assert out[::-1][:2] == hf.generate(PROMPTS[::-1][:2], s, progress=False)   # nor order or neighbours
    other = hf.generate(PROMPTS, Sampling(n=2, temperature=1.0, max_new_tokens=8, seed=2), progress=False)
    assert texts(other) != texts(out)


def test_tiny_top_p_equals_greedy_and_greedy_n_is_replicated(hf):
    greedy = hf.generate(PROMPTS[:3], Sampling(n=2, max_new_tokens=8), progress=False)
    assert all(r[0] == r[1] for r in greedy)
    nucleus = hf.generate(PROMPTS[:3], Sampling(n=2, temperature=0.8, top_p=1e-6, max_new_tokens=8), progress=False)
    assert nucleus == greedy


def test_stop_strings_truncate_and_end_generation(hf):
    free = hf.generate(PROMPTS, Sampling(max_new_tokens=16), progress=False)
    full = free[1][0].text
    stop = full[len(full) // 2: len(full) // 2 + 4]
    assert stop.strip(), full
    out = hf.generate(PROMPTS, Sampling(max_new_tokens=16, stop=(stop, "never-seen-string")), progress=False)
    got = out[1][0]
    assert got.text == full[:full.find(stop)] and got.finish_reason == "stop"
    assert got.n_tokens < 16
    for before, after in zip(free, out):
        if stop not in before[0].text:
            assert after == before


def test_messages_are_rendered_with_the_chat_template(hf):
    messages = [{"role": "user", "content": "What is 1+1?"}]
    rendered = hf.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.rstrip().endswith("assistant")
    s = Sampling(max_new_tokens=6)
    assert hf.generate([messages], s, progress=False) == hf.generate([rendered], s, progress=False)


@pytest.mark.parametrize("style", ["plain", "chat"])
def test_generation_reads_the_prompt_ids_training_uses(hf, style):
    """render/encode (every backend) and sot.sft.data (training, distance) share sot.prompts and sot.tokens."""
    from sot import prompts
    from sot.llm.base import encode, render
    from sot.sft.data import IGNORE, build_dataset

    tok, question = hf.tokenizer, "What is 1+1?"
    text = prompts.render(question, style, tok)
    if style == "chat":
        assert render(tok, [{"role": "user", "content": question}]) == text
    example = build_dataset([{"id": "q", "prompt": question, "completion": "2"}], tok, style, 128).examples[0]
    n_prompt = example["labels"].count(IGNORE)
    assert encode(tok, text) == example["input_ids"][:n_prompt]


def test_checkpoint_generation_defaults_are_ignored(tiny_model, hf, tmp_path):
    import shutil
    shutil.copytree(tiny_model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    cfg.update(repetition_penalty=5.0, no_repeat_ngram_size=1, do_sample=True, temperature=3.0)
    (tmp_path / "m" / "generation_config.json").write_text(json.dumps(cfg))
    s = Sampling(max_new_tokens=6)
    plain = hf.generate(PROMPTS[:3], s, progress=False)
    tokens = [hf.tokenizer(r[0].text, add_special_tokens=False)["input_ids"] for r in plain]
    assert any(len(set(t)) < len(t) for t in tokens)            # it repeats tokens: no_repeat_ngram would bite
    assert get_backend("transformers", str(tmp_path / "m")).generate(PROMPTS[:3], s, progress=False) == plain


def test_bench_generation_runs_on_the_tiny_model(tiny_model, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_generation.py"
    spec = importlib.util.spec_from_file_location("bench_generation", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--model", tiny_model, "--prompts", "2", "--max-new-tokens", "3", "--ks", "1,2",
                       "--repeats", "1", "--batch-size", "4", "--devices", "cpu"])
    cpu = [r for r in rows if r["device"] == "cpu"]
    assert [(r["k"], r["mode"]) for r in cpu] == [(1, "batched (batch 4)"), (1, "one at a time"),
                                                  (2, "batched (batch 4)"), (2, "one at a time")]
    assert [r["tokens"] for r in cpu] == [6, 6, 12, 12] and cpu[0]["speedup"] > 0
    assert "| device |" in capsys.readouterr().out


def test_count_generated_counts_eos_not_padding():
    eos = {2}
    assert count_generated([5, 6, 2, 2, 2], eos, None) == (3, True)       # EOS counted, pads (= EOS) not
    assert count_generated([5, 6, 7, 8], eos, None) == (4, False)         # ran to the limit
    assert count_generated([5, 6, 2, 2], eos, 2) == (2, True)             # stop string, then pad = EOS
    assert count_generated([5, 6, 0, 0], eos, 2) == (2, True)             # stop string, pad != EOS
    assert count_generated([5, 2, 9, 9], eos, None) == (2, True)


def test_truncate_at_stop_and_prompt_seed():
    assert truncate_at_stop("a\n\nQuestion: b Q:", ("Q:", "\n\nQuestion:")) == ("a", True)
    assert truncate_at_stop("abc", ()) == ("abc", False)
    assert prompt_seed(0, "x", 0) == prompt_seed(0, "x", 0) != prompt_seed(0, "x", 1) != prompt_seed(1, "x", 1)


def test_bad_prompts_and_sampling_are_rejected(hf):
    with pytest.raises(TypeError, match=r"prompts\[1\]\[0\]"):
        hf.generate(["ok", [{"role": "user"}]], Sampling(), progress=False)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0)
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("nope", "x")


def test_info_and_auto_choice(tiny_model, hf):
    info = hf.info()
    assert info["backend"] == "transformers" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["model"] == tiny_model and info["versions"]["transformers"]
    import torch
    if not torch.cuda.is_available():
        auto = get_backend("auto", tiny_model, batch_size=2, gpu_memory_utilization=0.5)
        assert auto.info()["backend"] == "transformers" and "no CUDA" in auto.info()["auto_choice"]
        with pytest.raises(RuntimeError, match="CUDA"):
            get_backend("vllm", tiny_model)


def test_adapter_is_merged_on_top(tiny_model, hf, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from sot.models import load

    model, tok = load(tiny_model)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "lora")
    with_adapter = get_backend("transformers", tiny_model, adapter=str(tmp_path / "lora"), batch_size=4)
    s = Sampling(max_new_tokens=8)
    out = with_adapter.generate(PROMPTS[:2], s, progress=False)
    assert texts(out) != texts(hf.generate(PROMPTS[:2], s, progress=False))
    ids = tok(PROMPTS[0], return_tensors="pt")
    ref = peft_model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out[0][0].text == tok.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert with_adapter.info()["adapter_sha256"]


# ---------------------------------------------------------------- openai backend against a fake server

class FakeOpenAI(BaseHTTPRequestHandler):
    """Serves /v1/completions and /v1/chat/completions; fails the first requests with queued statuses."""
    state: dict = {}

    def log_message(self, *args):
        pass

    def do_POST(self):
        st = self.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with st["lock"]:
            st["requests"].append((self.path, body))
            st["active"] += 1
            st["max_active"] = max(st["max_active"], st["active"])
            fail = st["fail"].pop(0) if st["fail"] else None
        try:
            time.sleep(0.05)
            if fail is not None:
                headers = {"Retry-After": "0"} if fail == 429 else {}
                return self._send(fail, {"error": {"message": f"injected {fail}"}}, headers)
            n = body.get("n", 1)
            if n > 1 and st["reject_n"]:
                return self._send(400, {"error": {"message": "n > 1 is not supported", "param": "n"}})
            prompt = body.get("prompt") or body["messages"][-1]["content"]
            outs = [f"answer to {prompt[:12]} seed={body.get('seed')} #{i} STOP tail" for i in range(n)]
            if self.path.endswith("/chat/completions"):
                choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                           for i, t in enumerate(outs)]
            else:
                choices = [{"index": i, "text": t, "finish_reason": "length", "logprobs": None}
                           for i, t in enumerate(outs)]
            usage = {"prompt_tokens": 3, "completion_tokens": 10 * n, "total_tokens": 10 * n + 3}
            self._send(200, {"id": "x", "object": "chat.completion" if "chat" in self.path else "text_completion",
                             "created": 0, "model": body["model"], "choices": choices, "usage": usage})
        finally:
            with st["lock"]:
                st["active"] -= 1

    def _send(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def fake_server():
    FakeOpenAI.state = {"lock": threading.Lock(), "requests": [], "active": 0, "max_active": 0,
                        "fail": [], "reject_n": False}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", FakeOpenAI.state
    server.shutdown()
    server.server_close()


def test_openai_completions_chat_retries_and_concurrency(fake_server, monkeypatch):
    url, st = fake_server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    st["fail"] = [429, 500]
    backend = get_backend("openai", "served-model", base_url=url, concurrency=3, backoff=0.01)
    prompts = [f"question {i}" for i in range(8)] + [[{"role": "user", "content": "chat question"}]]
    out = backend.generate(prompts, Sampling(n=2, temperature=0.7, max_new_tokens=20, stop=(" STOP",)),
                           progress=False)
    assert backend.retries == 2 and 1 < st["max_active"] <= 3
    assert [len(r) for r in out] == [2] * 9
    assert out[0][0].text.startswith("answer to question 0 seed=") and out[0][0].text.endswith("#0")
    assert out[0][0].finish_reason == "stop" and out[0][0].n_tokens + out[0][1].n_tokens == 20
    assert out[-1][1].text.startswith("answer to chat questio")
    paths = {p for p, _ in st["requests"]}
    assert paths == {"/v1/completions", "/v1/chat/completions"}
    body = next(b for p, b in st["requests"] if p == "/v1/completions")
    assert body["n"] == 2 and body["max_tokens"] == 20 and body["stop"] == [" STOP"]


def test_openai_falls_back_to_one_request_per_sample(fake_server):
    url, st = fake_server
    st["reject_n"] = True
    backend = get_backend("openai", "m", base_url=url, concurrency=2, backoff=0.01)
    out = backend.generate(["p1", "p2"], Sampling(n=3, temperature=1.0, max_new_tokens=5), progress=False)
    assert not backend.n_supported and [len(r) for r in out] == [3, 3]
    assert len({s.text for s in out[0]}) == 3                       # distinct seeds per sample
    assert all(s.n_tokens == 10 for r in out for s in r)
    greedy = backend.generate(["p1"], Sampling(n=2, max_new_tokens=5), progress=False)
    assert greedy[0][0] == greedy[0][1]


def test_openai_gives_up_after_max_retries_and_needs_a_key_for_remote_urls(fake_server, monkeypatch):
    url, st = fake_server
    st["fail"] = [503] * 5
    backend = get_backend("openai", "m", base_url=url, max_retries=2, backoff=0.01)
    with pytest.raises(RuntimeError, match="after 2 retries"):
        backend.generate(["p"], Sampling(), progress=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(RuntimeError, match="MY_KEY"):
        get_backend("openai", "m", base_url="https://api.example.com/v1", api_key_env="MY_KEY")
    assert isinstance(Sample("a", 1, "stop"), Sample)


def test_vllm_backend_builds_requests_like_the_transformers_backend(tiny_model, monkeypatch, tmp_path):
    """Our side of the vLLM backend on the CPU, with a stand-in `vllm` module that records what it is asked:
    token ids equal the transformers backend's encoding, one seeded request per prompt, greedy replicated,
    stop strings cut with finish_reason 'stop', LoRA through LoRARequest. (The real engine: tests/test_llm_gpu.py.)"""
    import sys
    import types
    from types import SimpleNamespace as NS

    import torch
    from transformers import AutoTokenizer

    from sot.llm.base import encode, prompt_seed, render

    tok = AutoTokenizer.from_pretrained(tiny_model)
    calls = {}

    class LLM:
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def get_tokenizer(self):
            return tok

        def generate(self, requests, params, use_tqdm=True, lora_request=None):
            calls.update(requests=requests, params=params, lora=lora_request)
            return [NS(outputs=[NS(index=i, text=f"step {i} ### tail", token_ids=[5] * (7 + i),
                                   finish_reason="length") for i in reversed(range(p.n))]) for p in params]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **kw: NS(**kw)
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, i, path: ("lora", name, i, path)
    for name, module in {"vllm": vllm, "vllm.lora": types.ModuleType("vllm.lora"), "vllm.lora.request": lora}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    (tmp_path / "adapter_config.json").write_text("{}")      # only its digest is taken here
    backend = get_backend("vllm", tiny_model, adapter=str(tmp_path), max_model_len=512)
    assert calls["init"]["enable_lora"] and calls["init"]["max_model_len"] == 512 and calls["init"]["seed"] == 0
    prompts = ["Q: 2+2?\nA:", [{"role": "user", "content": "hi"}]]
    out = backend.generate(prompts, Sampling(n=3, temperature=0.7, max_new_tokens=16, seed=9), progress=False)
    texts = [render(tok, p) for p in prompts]
    assert [r["prompt_token_ids"] for r in calls["requests"]] == [encode(tok, t) for t in texts]
    assert [p.seed for p in calls["params"]] == [prompt_seed(9, t, 0) for t in texts]
    assert all(p.n == 3 and p.max_tokens == 16 and p.temperature == 0.7 for p in calls["params"])
    assert calls["lora"] == ("lora", "adapter", 1, str(tmp_path))
    from sot.tokens import end_token_id
    assert all(p.stop_token_ids == [end_token_id(tok, "chat")] for p in calls["params"])   # chat end-of-turn
    assert [s.n_tokens for s in out[0]] == [7, 8, 9] and {s.finish_reason for s in out[0]} == {"length"}

    greedy = backend.generate(prompts[:1], Sampling(n=4, max_new_tokens=8, stop=("###",)), progress=False)
    assert calls["params"][0].n == 1 and calls["params"][0].seed is None and calls["params"][0].stop == ["###"]
    assert len(greedy[0]) == 4 and len({s.text for s in greedy[0]}) == 1
    assert greedy[0][0].text == "step 0 " and greedy[0][0].finish_reason == "stop"


def test_a_chat_models_end_of_turn_stops_generation_even_when_its_config_lists_another_eos(tiny_model, tmp_path):
    """A base model fine-tuned in chat style learned the template's end-of-turn token (sot.tokens.end_token_id);
    a generation config that lists only <|endoftext|> must not make it run to the length limit."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    from sot.tokens import end_token_id

    folder = tmp_path / "base-eos"
    shutil.copytree(tiny_model, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    other = tok.convert_tokens_to_ids("<|endoftext|>")
    assert other != end_token_id(tok, "chat")
    GenerationConfig(eos_token_id=other, pad_token_id=tok.pad_token_id).save_pretrained(folder)
    backend = get_backend("transformers", str(folder), batch_size=2)
    assert backend.eos_ids == {other, end_token_id(tok, "chat")}


def test_plan_batches_gives_a_long_prompt_a_small_batch_and_leaves_even_lengths_alone():
    from sot.llm.hf import plan_batches

    even = sorted([100, 120, 110, 130, 90, 105] * 20, reverse=True)          # 120 prompts within 2x of the median
    assert plan_batches(even, 64) == [(0, 64), (64, 120)]
    skewed = [1500] + [150] * 63                                              # the CPU study's MBPP shard
    plan = plan_batches(skewed, 64)
    assert plan[0] == (0, 12) and plan[1] == (12, 64)                         # 64 x 2 x 150 / 1500 = 12 rows
    assert sum(e - b for b, e in plan) == 64 and plan_batches([], 8) == []
    assert plan_batches([10_000, 10, 10], 4) == [(0, 1), (1, 3)]              # at least one row a batch
