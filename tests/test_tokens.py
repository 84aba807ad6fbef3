"""sot.tokens on small offline tokenizers built here, one per case the shared encoding must get right:
a Llama-3-like byte-level BPE (BOS added by its post-processor and written by its chat template, turns ended
by <|eot_id|>, not EOS), the same BPE with a post-processor that also appends EOS, and a SentencePiece model
with add_dummy_prefix (Llama-2 / Mistral style: Metaspace, and the legacy Prepend normalizer)."""
from __future__ import annotations

import io

import pytest

from sot import prompts, tokens
from sot.llm.base import encode as generation_encode
from sot.sft.data import IGNORE, build_dataset, build_example

CORPUS = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
          "Problem:\nWhat is 2 + 3?\n\nSolution:\n2 + 3 = 5\n#### 5",
          "The answer is 72.\n#### 72", "Tom has 3 apples and buys 4 more."] * 20
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                   "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
                   "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
PROMPT = prompts.render("What is 2 + 3?", "plain")
COMPLETION = "Natalia sold 5 clips.\n#### 5"


def _byte_bpe(single: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=LLAMA3_SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    bpe.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, bpe.token_to_id(t)) for t in ("<|begin_of_text|>", "<|end_of_text|>")])
    return bpe


@pytest.fixture(scope="module")
def llama3_like():
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_object=_byte_bpe("<|begin_of_text|> $A"), bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", chat_template=LLAMA3_TEMPLATE)


@pytest.fixture(scope="module")
def appends_eos():
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_object=_byte_bpe("<|begin_of_text|> $A <|end_of_text|>"),
                                   bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")


@pytest.fixture(scope="module")
def spm_model():
    """A tiny SentencePiece BPE model trained here, with the dummy prefix (and byte fallback) of Llama-2."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, model_type="bpe", vocab_size=330, byte_fallback=True,
        add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


def _spm_vocab(sp):
    from transformers.tokenization_utils_base import generate_merges

    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {piece: sp.get_score(i) for piece, i in vocab.items()}
    return vocab, generate_merges(vocab, scores, skip_tokens={"<unk>", "<s>", "</s>"})


@pytest.fixture(scope="module", params=["metaspace", "legacy-prepend"])
def dummy_prefix(request, spm_model):
    """The SentencePiece model as transformers loads Llama-2/Mistral: Metaspace (today's LlamaTokenizer) or the
    legacy tokenizer.json with a Prepend("▁") normalizer. Both reproduce the SentencePiece model's pieces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import LlamaTokenizer, PreTrainedTokenizerFast

    vocab, merges = _spm_vocab(spm_model)
    if request.param == "metaspace":
        tok = LlamaTokenizer(vocab=vocab, merges=merges, legacy=False, add_bos_token=True)
    else:
        backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                             decoders.Strip(" ", 1, 0)])
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    for text in CORPUS[:4] + ["x  y\n\n z"]:
        assert tok.convert_ids_to_tokens(tok(text, add_special_tokens=False).input_ids) == \
            spm_model.encode(text, out_type=str), text
    return tok


def test_llama3_like_bos_once_and_end_of_turn(llama3_like):
    tok = llama3_like
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert tokens.end_token_id(tok, "chat") == eot != tok.eos_token_id
    assert tokens.end_token_id(tok, "plain") == tok.eos_token_id
    chat = prompts.render("What is 2 + 3?", "chat", tok)
    assert tok(chat).input_ids[:2] == [tok.bos_token_id] * 2          # the case: template and tokenizer both add BOS
    for text in (chat, PROMPT):
        ids = tokens.encode_prompt(tok, text)
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        assert generation_encode(tok, text) == ids                     # evaluation reads what training trains on
    ex = build_example(tok, chat, COMPLETION, 512, style="chat")
    labels = [t for t in ex["labels"] if t != IGNORE]
    assert labels[-1] == eot and tok.decode(labels) == COMPLETION + "<|eot_id|>"
    assert build_example(tok, PROMPT, COMPLETION, 512, style="plain")["labels"][-1] == tok.eos_token_id


def test_a_post_processor_that_appends_eos_never_ends_a_prompt_with_eos(appends_eos):
    tok = appends_eos
    assert tok(PROMPT).input_ids[-1] == tok.eos_token_id              # the case
    ids = tokens.encode_prompt(tok, PROMPT)
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    assert ids == [tok.bos_token_id] + tok(PROMPT, add_special_tokens=False).input_ids
    assert generation_encode(tok, PROMPT) == ids
    ex = build_example(tok, PROMPT, COMPLETION, 512)
    assert ex["input_ids"].count(tok.eos_token_id) == 1 and ex["input_ids"][-1] == tok.eos_token_id


def test_dummy_prefix_gives_no_spurious_space(dummy_prefix):
    tok = dummy_prefix
    naive = tok(COMPLETION, add_special_tokens=False).input_ids
    prompt_ids = tokens.encode_prompt(tok, PROMPT)
    assert tok.decode(prompt_ids + naive, skip_special_tokens=True) == PROMPT + " " + COMPLETION   # the case
    completion_ids = tokens.encode_completion(tok, COMPLETION)
    assert tok.decode(prompt_ids + completion_ids, skip_special_tokens=True) == PROMPT + COMPLETION
    # the same ids the tokenizer gives the joined text: the boundary (after "Solution:\n") is where generation starts
    assert tokens.encode_prompt(tok, PROMPT + COMPLETION) == prompt_ids + completion_ids
    assert tokens.encode_completion(tok, " " + COMPLETION)[0] != completion_ids[0]   # a real leading space stays
    assert prompt_ids[0] == tok.bos_token_id and tok.convert_ids_to_tokens(prompt_ids[1]).startswith("▁")
    tset = build_dataset([{"id": "a", "prompt": "What is 2 + 3?", "completion": COMPLETION}], tok, "plain", 512)
    assert tok.decode(tset.examples[0]["input_ids"], skip_special_tokens=True) == PROMPT + COMPLETION


def test_tokenizers_without_a_prefix_are_unchanged(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)                    # SmolLM2's byte-level BPE
    for text in (COMPLETION, " " + COMPLETION, "\n\nx", ""):
        assert tokens.encode_completion(tok, text) == tok(text, add_special_tokens=False).input_ids
    assert tokens.end_token_id(tok, "chat") == tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    assert not tokens.adds_bos(tok)
    assert tokens.encode_prompt(tok, PROMPT) == tok(PROMPT).input_ids


def test_truncated_records_get_no_end_token(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    records = [{"id": "done", "prompt": "Q?", "completion": "2 + 2 = 4", "source": {"finish_reason": "stop"}},
               {"id": "cut", "prompt": "Q?", "completion": "2 + 2 = 4", "source": {"finish_reason": "length"}},
               {"id": "flag", "prompt": "Q?", "completion": "2 + 2 = 4",
                "source": {"finish_reason": "length", "truncated": False}},   # the source's flag decides
               {"id": "empty", "prompt": "Q?", "completion": "", "source": {"truncated": True}}]
    with pytest.warns(UserWarning, match="dropped"):
        tset = build_dataset(records, tok, "plain", 128)
    assert tset.ids == ["done", "cut", "flag"] and (tset.n_unterminated, tset.n_dropped) == (1, 1)
    ends = [[t for t in e["labels"] if t != IGNORE][-1] for e in tset.examples]
    assert ends[0] == ends[2] == tok.eos_token_id != ends[1]


def test_unknown_style_and_missing_template_are_errors(appends_eos):
    with pytest.raises(ValueError, match="unknown prompt style"):
        tokens.end_token_id(appends_eos, "fewshot")
    with pytest.raises(ValueError, match="no chat template"):
        tokens.end_token_id(appends_eos, "chat")
