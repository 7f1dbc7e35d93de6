"""Loading text-to-image models: the embedded demo model, a diffusers folder, a single SD1.x
.safetensors file, or a hub id; and the LoadedModel every other module works with.

Only the SD1.x architecture is accepted (UNet2DConditionModel with cross-attention on CLIPTextModel
embeddings, AutoencoderKL, CLIPTokenizer, epsilon prediction); sizes are free, so the small demo
model counts. SD2.x (OpenCLIP, 1024-dim text, v-prediction), SDXL, inpainting and other pipelines
are refused with a ModelLoadError that says why and what to pass instead.

Pickle checkpoints (.ckpt/.pt/.pth/.bin) can run arbitrary code when loaded: they are refused
unless `allow_pickle=True`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from kscu.domain import FAMILIES, Domain, build_domain

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_MODEL_DIR = ASSETS / "demo-model"
SD1_CONFIG_DIR = ASSETS / "sd1-config"
"""Diffusers configs of SD1.4/1.5 (no weights): the `config` for single-file checkpoints."""

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PICKLE_MESSAGE = (
    "pickle checkpoints can run code when loaded; convert to .safetensors or pass "
    "allow_pickle=True / --allow-pickle if you trust the file"
)
WHAT_TO_PASS = "pass a diffusers folder, a .safetensors file, or a hub id"
SD1_ONLY = (
    "only SD1.x-architecture pipelines are supported (StableDiffusionPipeline: UNet2DConditionModel "
    "+ AutoencoderKL + CLIPTextModel + CLIPTokenizer, epsilon prediction), e.g. Stable Diffusion 1.4/1.5 "
    "and their fine-tunes"
)
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_EXPECTED_COMPONENTS = {
    "unet": ("diffusers", ("UNet2DConditionModel",)),
    "vae": ("diffusers", ("AutoencoderKL",)),
    "text_encoder": ("transformers", ("CLIPTextModel",)),
    "tokenizer": ("transformers", ("CLIPTokenizer", "CLIPTokenizerFast")),
}
_WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder")


class ModelLoadError(ValueError):
    """A model could not be loaded; the message says what to do about it."""


@dataclass
class LoadedModel:
    """A pipeline plus what the workbench needs to know about it.

    domain: what the model draws (kscu.domain.Domain: vocabulary, phrasings, presets, judge),
    resolved once at load time. The pipeline's UNet is the *base* model: unlearning works on a copy
    and never modifies it, so "before" images stay available.
    """

    pipe: StableDiffusionPipeline
    source: str
    domain: Domain
    device: torch.device
    dtype: torch.dtype
    model_hash: str
    extras: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        """The domain's family name ("demo" or "sd1"), recorded with every edit."""
        return self.domain.family

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def text_encoder(self):
        return self.pipe.text_encoder

    @property
    def tokenizer(self):
        return self.pipe.tokenizer

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def half_on_cuda(self) -> bool:
        """Whether the base weights are fp16/bf16 on a GPU: the float32 copies that training
        and previews use then run under autocast in this dtype (CPU models stay float32)."""
        return self.device.type == "cuda" and self.dtype in (torch.float16, torch.bfloat16)

    def autocast(self):
        """The autocast context for float32 modules working beside this model's half weights."""
        return torch.autocast("cuda", dtype=self.dtype) if self.half_on_cuda else nullcontext()


# ---------------------------------------------------------------------------------------------
# hashing
# ---------------------------------------------------------------------------------------------


def state_dict_hash(module: torch.nn.Module) -> str:
    """sha256 (first 16 hex chars) of a module's state dict, canonicalised.

    Keys in sorted order; for each: the key, the shape, and the values converted to float32
    (exact for fp16/bf16), little-endian bytes. So the hash names the *weights*, independent of
    the device and of whether the file stored them in fp16 or fp32; a module converted *down*
    (fp32 -> fp16) hashes differently, since its values changed. ~1.2 GB/s: an SD1 UNet
    (3.4 GB in fp32) takes about 3 s on a CPU, the demo UNet milliseconds.
    """
    digest = hashlib.sha256()
    state = module.state_dict()
    for key in sorted(state):
        tensor = state[key].detach()
        digest.update(key.encode())
        digest.update(repr(tuple(tensor.shape)).encode())
        if tensor.is_floating_point():
            tensor = tensor.float()
        digest.update(tensor.cpu().contiguous().numpy())  # native byte order: little-endian on every torch platform
    return digest.hexdigest()[:16]


def unet_hash(unet: torch.nn.Module) -> str:
    """The model hash of a UNet (see state_dict_hash); LoadedModel.model_hash is this for the base
    UNet, computed at load time before any dtype conversion."""
    return state_dict_hash(unet)


# ---------------------------------------------------------------------------------------------
# checks on configs and files (before any weight is read)
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path.parent}: missing {path.name}; {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e}); {what}") from None


def _is_demo_folder(folder: Path) -> bool:
    return (folder / "classifier" / "classifier.json").is_file()


def _as_int(value):
    """cross_attention_dim may be a per-block list in some configs; SD1 uses one int."""
    if isinstance(value, (list, tuple)):
        values = set(value)
        return values.pop() if len(values) == 1 else None
    return value


def _check_sd1_configs(folder: Path) -> dict:
    """Check a diffusers folder's configs describe an SD1.x-architecture pipeline; return them."""
    index = _read_json(folder / "model_index.json", WHAT_TO_PASS)
    class_name = index.get("_class_name")
    if class_name != "StableDiffusionPipeline":
        raise ModelLoadError(f"{folder} holds a {class_name or 'pipeline of unknown class'}: {SD1_ONLY}")
    for name, (library, classes) in _EXPECTED_COMPONENTS.items():
        entry = index.get(name)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == library and entry[1] in classes):
            raise ModelLoadError(f"{folder}: component {name!r} is {entry!r}, expected {library}.{classes[0]}; {SD1_ONLY}")
    scheduler_entry = index.get("scheduler")
    if not (isinstance(scheduler_entry, list) and len(scheduler_entry) == 2 and scheduler_entry[0] == "diffusers"):
        raise ModelLoadError(f"{folder}: component 'scheduler' is {scheduler_entry!r}, expected a diffusers scheduler")

    unet = _read_json(folder / "unet" / "config.json", "the folder is an incomplete diffusers pipeline")
    text = _read_json(folder / "text_encoder" / "config.json", "the folder is an incomplete diffusers pipeline")
    vae = _read_json(folder / "vae" / "config.json", "the folder is an incomplete diffusers pipeline")
    scheduler_files = sorted((folder / "scheduler").glob("*.json"))
    scheduler = _read_json(scheduler_files[0], "") if scheduler_files else {}

    cross = _as_int(unet.get("cross_attention_dim"))
    hidden = text.get("hidden_size")
    if cross == 1024 or hidden == 1024:
        raise ModelLoadError(
            f"{folder} looks like Stable Diffusion 2.x (1024-dim OpenCLIP text embeddings): {SD1_ONLY}"
        )
    if scheduler.get("prediction_type") == "v_prediction":
        raise ModelLoadError(f"{folder} is a v-prediction model (SD2-768 style): {SD1_ONLY}")
    if cross is None or cross != hidden:
        raise ModelLoadError(
            f"{folder}: UNet cross_attention_dim {unet.get('cross_attention_dim')} does not match the text "
            f"encoder's hidden size {hidden}; {SD1_ONLY}"
        )
    for key in ("addition_embed_type", "class_embed_type", "encoder_hid_dim_type"):
        if unet.get(key) is not None:
            raise ModelLoadError(f"{folder}: UNet has {key}={unet[key]!r} (SDXL/upscaler-style conditioning); {SD1_ONLY}")
    latent = vae.get("latent_channels", 4)
    if unet.get("in_channels", 4) != latent or unet.get("out_channels", 4) != latent:
        raise ModelLoadError(
            f"{folder}: UNet has {unet.get('in_channels')} input channels for {latent} latent channels "
            f"(an inpainting/depth/instruct model?); {SD1_ONLY}"
        )
    return {"index": index, "unet": unet, "text_encoder": text, "vae": vae, "scheduler": scheduler}


def _weights_variant(folder: Path, allow_pickle: bool) -> str | None:
    """Check every weight component has loadable files; the variant to pass ("fp16") or None."""
    variants = set()
    for name in _WEIGHT_COMPONENTS:
        sub = folder / name
        safetensors = sorted(p.name for p in sub.glob("*.safetensors"))
        pickles = sorted(p.name for p in sub.iterdir() if p.suffix == ".bin") if sub.is_dir() else []
        plain = [n for n in safetensors if n.count(".") == 1]  # not "<name>.<variant>.safetensors"
        if plain:
            continue
        if safetensors and all(".fp16." in n for n in safetensors):
            variants.add("fp16")
            continue
        if pickles:
            if allow_pickle:
                continue
            raise ModelLoadError(f"{sub} has only pickle weights ({', '.join(pickles)}): {PICKLE_MESSAGE}")
        raise ModelLoadError(f"{sub}: no weights found (expected *.safetensors); the folder is incomplete")
    return variants.pop() if len(variants) == 1 else None


def _checkpoint_summary(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a .safetensors file, read from its header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as e:  # SafetensorError, OSError: truncated, corrupt, not safetensors at all
        raise ModelLoadError(
            f"{path}: could not read it as a safetensors file ({e}); the file is truncated or corrupt "
            f"(re-download it) or not a safetensors checkpoint"
        ) from None


def _check_sd1_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], config_dir: Path) -> None:
    """Check a single-file checkpoint holds an SD1.x model (LDM layout) matching config_dir."""
    keys = shapes.keys()
    if any(k.startswith("conditioner.embedders.") for k in keys):
        raise ModelLoadError(f"{path} is an SDXL checkpoint, not an SD1.x checkpoint: {SD1_ONLY}")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise ModelLoadError(f"{path} is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder), not an SD1.x checkpoint: {SD1_ONLY}")
    unet_keys = [k for k in keys if k.startswith("model.diffusion_model.")]
    if not unet_keys:
        hint = ""
        if any(k.startswith(("down_blocks.", "text_model.", "encoder.layers.", "decoder.up_blocks.")) for k in keys):
            hint = " It looks like one component of a diffusers pipeline: pass the whole pipeline folder instead."
        elif any(k.startswith(("lora_", "lora_unet_")) or ".lora_" in k for k in keys):
            hint = " It looks like a LoRA, which needs its base model."
        raise ModelLoadError(
            f"{path} is not an SD1.x checkpoint: it has no Stable Diffusion UNet weights (model.diffusion_model.*).{hint} "
            f"{WHAT_TO_PASS}"
        )
    missing = [p for p in ("first_stage_model.", "cond_stage_model.transformer.") if not any(k.startswith(p) for k in keys)]
    if missing:
        parts = {"first_stage_model.": "the VAE", "cond_stage_model.transformer.": "the CLIP text encoder"}
        raise ModelLoadError(
            f"{path} is not a complete SD1.x checkpoint: it lacks {' and '.join(parts[p] for p in missing)} "
            f"({', '.join(p + '*' for p in missing)}); {WHAT_TO_PASS}"
        )
    unet_config = json.loads((config_dir / "unet" / "config.json").read_text())
    to_k = [shapes[k] for k in unet_keys if k.endswith("attn2.to_k.weight")]
    context = to_k[0][-1] if to_k else None
    if context == 1024:
        raise ModelLoadError(f"{path} has 1024-dim cross-attention (Stable Diffusion 2.x): {SD1_ONLY}")
    if context != _as_int(unet_config.get("cross_attention_dim")):
        raise ModelLoadError(
            f"{path}: cross-attention width {context} does not match the SD1 config in {config_dir} "
            f"({unet_config.get('cross_attention_dim')}); not an SD1.x checkpoint of that size"
        )
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and conv_in[1] != unet_config.get("in_channels", 4):
        raise ModelLoadError(
            f"{path}: the UNet takes {conv_in[1]} input channels (an inpainting/instruct model?), "
            f"SD1 text-to-image takes {unet_config.get('in_channels', 4)}: {SD1_ONLY}"
        )


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def _resolve_dtype(dtype, device: torch.device, tiny: bool) -> torch.dtype:
    if dtype is None:
        # A tiny model (the demo model) is tuned in float32; fp16 would only add numerical drift.
        return torch.float16 if device.type == "cuda" and not tiny else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
    key = str(dtype).lower().removeprefix("torch.")
    if key not in names:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use float32, float16 or bfloat16")
    return names[key]


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ModelLoadError(f"unknown device {device!r} ({e}); use 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    return device


@contextmanager
def _quiet_loading():
    """No "Loading pipeline components" / "Loading weights" bars in the UI's and tests' output."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    states = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _ in states:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in states:
            if enabled:
                module.enable_progress_bar()


def _pretrained_kwargs(allow_pickle: bool) -> dict:
    return dict(
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        use_safetensors=None if allow_pickle else True,
    )


def _load_folder(folder: Path, allow_pickle: bool) -> StableDiffusionPipeline:
    _check_sd1_configs(folder)
    variant = _weights_variant(folder, allow_pickle)
    try:
        return StableDiffusionPipeline.from_pretrained(
            str(folder), local_files_only=True, variant=variant, **_pretrained_kwargs(allow_pickle)
        )
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{folder}: could not load the diffusers pipeline ({type(e).__name__}: {e})") from e


def _load_single_file(path: Path, config_dir: Path, allow_pickle: bool) -> StableDiffusionPipeline:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelLoadError(f"{path}: {PICKLE_MESSAGE}")
    elif path.suffix.lower() != ".safetensors":
        raise ModelLoadError(f"{path}: unknown checkpoint type {path.suffix!r}; {WHAT_TO_PASS}")
    if not (config_dir / "model_index.json").is_file():
        raise ModelLoadError(f"config {config_dir} is not a diffusers config folder (no model_index.json)")
    _check_sd1_configs(config_dir)
    if path.suffix.lower() == ".safetensors":
        _check_sd1_checkpoint(path, _checkpoint_summary(path), config_dir)
    try:
        return StableDiffusionPipeline.from_single_file(
            str(path), config=str(config_dir), local_files_only=True,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    except Exception as e:
        raise ModelLoadError(
            f"{path}: could not load it as an SD1.x single-file checkpoint with the configs in {config_dir} "
            f"({type(e).__name__}: {e})"
        ) from e


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _load_hub(repo_id: str, allow_pickle: bool) -> tuple[StableDiffusionPipeline, Path]:
    """Configs first (kilobytes: refuse a non-SD1 repo before gigabytes of weights), then the
    pipeline. Offline (HF_HUB_OFFLINE=1) only the local hub cache is used."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    offline = _hub_offline()
    unreachable = (
        f"could not get {repo_id!r} from the Hugging Face hub: the hub is unreachable"
        + (" (HF_HUB_OFFLINE=1) and the model is not in the local hub cache" if offline else "")
        + f"; pass a local folder or file instead (a diffusers folder or an SD1.x .safetensors file), "
        f"or check that {repo_id!r} is a local path that exists"
    )
    try:
        folder = Path(snapshot_download(
            repo_id, allow_patterns=["model_index.json", "*/config.json", "scheduler/*.json", "tokenizer/*"],
            local_files_only=offline,
        ))
        _check_sd1_configs(folder)
        pipe = StableDiffusionPipeline.from_pretrained(repo_id, local_files_only=offline, **_pretrained_kwargs(allow_pickle))
        return pipe, folder
    except ModelLoadError:
        raise
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise ModelLoadError(
            f"{repo_id!r}: no such model on the Hugging Face hub, or it is private/gated and needs a token "
            f"({type(e).__name__}); pass a local folder or file, or log in with `hf auth login`"
        ) from e
    except RevisionNotFoundError as e:
        raise ModelLoadError(f"{repo_id!r}: revision not found on the hub ({e})") from e
    except Exception as e:
        message = str(e).splitlines()[0] if str(e) else ""
        if not allow_pickle and "safetensors" in str(e).lower():
            raise ModelLoadError(f"{repo_id!r} has no .safetensors weights ({message}): {PICKLE_MESSAGE}") from e
        if _is_network_error(e):  # offline, DNS, timeouts, proxies, missing cache entries ...
            raise ModelLoadError(f"{unreachable} ({type(e).__name__}: {message})") from e
        raise ModelLoadError(f"{repo_id!r}: could not load the pipeline ({type(e).__name__}: {message})") from e


def _is_network_error(error: BaseException) -> bool:
    """Connection, offline-mode and not-in-cache errors (requests' and huggingface_hub's are
    OSErrors; httpx's transport errors are not, hence the names)."""
    names = " ".join(cls.__name__ for cls in type(error).__mro__)
    return isinstance(error, OSError) or any(
        word in names for word in ("Connect", "Timeout", "Transport", "Network", "Offline", "LocalEntryNotFound")
    )


def _looks_like_hub_id(source: str) -> bool:
    checkpoint_suffix = Path(source).suffix.lower() in PICKLE_SUFFIXES + (".safetensors",)
    return bool(_HUB_ID.fullmatch(source)) and not source.startswith(".") and not checkpoint_suffix


def _folder_hint(folder: Path) -> str:
    if (folder / "config.json").is_file() and (folder.parent / "model_index.json").is_file():
        return f" It looks like one component of a diffusers pipeline: pass {folder.parent} instead."
    checkpoints = sorted(p.name for p in folder.glob("*.safetensors")) + sorted(
        p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES
    )
    if checkpoints:
        return f" It contains checkpoint file(s) {', '.join(checkpoints[:3])}: pass one of those files instead."
    return ""


def load_model(
    source: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
    dtype: torch.dtype | str | None = None,
    *,
    config: str | os.PathLike | None = None,
    family: str | None = None,
    judge: str | os.PathLike | None = None,
) -> LoadedModel:
    """Load a text-to-image model for unlearning.

    source:
      - None or "demo": the embedded demo model (assets/demo-model).
      - a folder: a diffusers StableDiffusionPipeline folder (model_index.json). A folder with a
        `classifier/classifier.json` is a demo model (family "demo", classifier loaded), wherever it is.
      - a `.safetensors` file: an SD1.x single-file checkpoint (original LDM layout, as A1111/
        ComfyUI/civitai share them), loaded with `StableDiffusionPipeline.from_single_file` and the
        offline configs in `config` (default assets/sd1-config; pass a folder of other sizes for
        same-architecture checkpoints of another size). Real SD1.4/1.5 checkpoints were not
        available here (no hub access): the tests exercise this path with tiny SD1-layout
        checkpoints written by `kscu.sd_configs.save_single_file` (plus the extra keys real files
        carry), and check the key layout against diffusers' converter at full SD1 size on the meta
        device; a random-init full-size fp16 checkpoint loaded once by hand with the default config.
      - `.ckpt`/`.pt`/`.pth`/`.bin`: refused unless allow_pickle=True (pickle can run code).
      - "owner/name" (not an existing path): a Hugging Face hub id, from the local hub cache when
        HF_HUB_OFFLINE=1.
    family: the Domain to use; None = "demo" for a demo model folder, else "sd1". "sd1" on the demo
      model loads it as an unknown SD1.x pipeline: the generic domain, no demo knowledge.
    judge: a CLIP folder or hub id (kscu.judges.ClipJudge) or "nudenet"; None = the domain's own
      (the demo model's classifier; none on sd1).
    device: default "cuda" if available else "cpu". dtype: default float16 on CUDA (float32 for the
    demo model), float32 on the CPU; strings like "fp16" are accepted.

    All base components are frozen (requires_grad False, eval mode) and the progress bar is off.
    model_hash: `unet_hash` of the UNet as loaded (values in float32, before the dtype conversion),
    so the same weights give the same hash on any device, dtype, or storage format.
    Raises ModelLoadError (a ValueError) with a message saying what to do instead.
    """
    config_dir = Path(config).expanduser() if config is not None else SD1_CONFIG_DIR
    if family is not None and family not in FAMILIES:
        raise ModelLoadError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    extras: dict = {}
    if source is None or (isinstance(source, str) and source.strip().lower() == "demo"):
        folder = DEMO_MODEL_DIR
        if not (folder / "model_index.json").is_file():
            raise ModelLoadError(
                f"the embedded demo model is not built yet ({folder} is missing or incomplete): run "
                f"`python -m kscu.demo.train` (resumable, ~1.5 h on 2 CPU cores), or pass another model"
            )
        source_label, kind, path = "demo", "demo", folder
    else:
        text = os.fspath(source).strip()
        if not text:
            raise ModelLoadError(f"no model given; {WHAT_TO_PASS}")
        path = Path(text).expanduser()
        source_label = text
        if path.exists():
            path = path.resolve()
            source_label = str(path)
            kind = "folder" if path.is_dir() else "single_file"
        elif _looks_like_hub_id(text):
            kind = "hub"
        else:
            raise ModelLoadError(f"no such file or folder: {text} ; {WHAT_TO_PASS}")

    demo_folder = kind in ("demo", "folder") and _is_demo_folder(path)
    family = family or ("demo" if demo_folder else "sd1")
    device = _resolve_device(device)
    dtype = _resolve_dtype(dtype, device, tiny=demo_folder)
    given_judge = _load_judge(judge, device) if judge is not None else None
    with _quiet_loading():
        if kind in ("demo", "folder"):
            if not (path / "model_index.json").is_file():
                raise ModelLoadError(
                    f"{path} is not a diffusers pipeline folder (no model_index.json).{_folder_hint(path)} {WHAT_TO_PASS}"
                )
            pipe = _load_folder(path, allow_pickle)
        elif kind == "single_file":
            pipe = _load_single_file(path, config_dir, allow_pickle)
            extras["config"] = str(config_dir)
        else:
            pipe, path = _load_hub(text, allow_pickle)
    extras.update(kind=kind, path=str(path))

    _check_loaded(pipe, source_label)
    model_hash = unet_hash(pipe.unet)  # before the dtype conversion: see the docstring
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        # plain nn.Module.to: diffusers' ModelMixin.to warns about fp32 modules on every dtype cast,
        # even when the list of such modules is empty (SD1 has none)
        torch.nn.Module.to(module, device=device, dtype=dtype)
        module.requires_grad_(False)
        module.eval()

    try:
        domain = build_domain(family, judge=given_judge, folder=path, device=device)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelLoadError(f"{source_label}: {e}") from e
    return LoadedModel(pipe, source_label, domain, device, dtype, model_hash, extras)


def _load_judge(judge, device: torch.device):
    from kscu.judges import JudgeLoadError, load_judge

    try:
        return load_judge(judge, device)
    except JudgeLoadError as error:
        raise ModelLoadError(str(error)) from None


def _check_loaded(pipe, source: str) -> None:
    """The classes really loaded (configs can lie) and no weight left unloaded (meta tensors)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    expected = {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel}
    for name, cls in expected.items():
        module = getattr(pipe, name, None)
        if not isinstance(module, cls):
            raise ModelLoadError(f"{source}: component {name} is {type(module).__name__}, not {cls.__name__}; {SD1_ONLY}")
        meta = [n for n, p in module.named_parameters() if p.is_meta]
        if meta:
            raise ModelLoadError(f"{source}: {name} weights missing from the checkpoint (e.g. {meta[0]}); the file is incomplete")
    import transformers

    tokenizer_classes = (CLIPTokenizer, getattr(transformers, "CLIPTokenizerFast", CLIPTokenizer))
    if not isinstance(pipe.tokenizer, tokenizer_classes):
        raise ModelLoadError(f"{source}: tokenizer is {type(pipe.tokenizer).__name__}, not CLIPTokenizer; {SD1_ONLY}")
    if pipe.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ModelLoadError(f"{source}: the scheduler predicts {pipe.scheduler.config.prediction_type}; {SD1_ONLY}")


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def describe(model: LoadedModel) -> dict:
    """A JSON-friendly summary for the UI and result records."""
    pipe = model.pipe
    counts = {name: _count(getattr(pipe, name)) for name in ("unet", "text_encoder", "vae")}
    counts["total"] = sum(counts.values())
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return {
        "source": model.source,
        "family": model.family,
        "kind": model.extras.get("kind"),
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "parameters": counts,
        "model_hash": model.model_hash,
        "resolution": int(pipe.unet.config.sample_size) * vae_scale,
        "cross_attention_dim": _as_int(pipe.unet.config.cross_attention_dim),
        "token_length": int(pipe.tokenizer.model_max_length),
        "scheduler": type(pipe.scheduler).__name__,
        "judge": model.domain.judge.name if model.domain.judge is not None else None,
    }
