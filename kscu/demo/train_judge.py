"""Train a small CLIP (transformers' CLIPModel) on the shape world, resumably: the offline stand-in
for a real CLIP checkpoint, so the zero-shot judge path (kscu.judges.ClipJudge) is proven on images
whose truth is known.

Run: python -m kscu.demo.train_judge --work work/shape-clip --out assets/shape-clip
(resumes from the last checkpoint in --work; about an hour on 2 CPU cores, a quarter of it decoding the renders). `--micro` runs a
seconds-long version (tests). `--init FOLDER` starts from a saved judge's weights with a fresh
learning-rate schedule (a continuation that resumes a finished run's checkpoint trains only at the
tail of its cosine, where a few thousand steps barely move the weights); with `--patch-size 4` it
resamples an 8-pixel-patch judge to 4-pixel patches first (how the shipped judge was made: its
kscu_judge.json `history`).

Captions name a random subset of a scene's four attributes (often just one, so that a bare label
such as "striped" is a caption the text tower knows), in the demo prompt templates or alone, with an
optional "an image of" prefix. Several captions in a batch can be true of one image ("striped" of
every striped image), so the loss is contrastive with every true caption a positive (the targets of
each row are spread evenly over its positives) rather than CLIP's one-positive diagonal. Images are
renders, most of them passed through the demo model's VAE (with noise on some latents, as the
exact classifier is trained), since the judge reads decoded samples, not renders; on clean renders
alone its readings of generated images differed from the exact classifier's by up to 8 points.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from kscu.demo.prompts import TRAIN_TEMPLATES, compose
from kscu.demo.train import lr_at, reconstruct
from kscu.demo.world import ATTRIBUTES, BACKGROUNDS, COLOURS, SHAPES, STYLES, Scene, generate

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "assets" / "clip-tokenizer"
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
"""The processor's normalisation: [-1, 1], the convention of the demo model's VAE."""
PREFIXES = ("", "", "an image of ", "a picture of ")
JUDGE_FILE = "kscu_judge.json"


@dataclass
class JudgeTrainConfig:
    n_images: int = 40_000
    steps: int = 4000
    batch: int = 192
    lr: float = 1e-3
    warmup: int = 200
    seed: int = 0
    text_width: int = 64
    vision_width: int = 128
    vision_layers: int = 4
    patch_size: int = 8
    """Pixels per side of a vision token (64x64 images: 8 gives 64 tokens, 4 gives 256 and about 8x the
    training time per step). A judge given with `init` at coarser patches is resampled to these."""
    checkpoint_every: int = 250
    vae_from: str = str(Path(__file__).resolve().parents[2] / "assets" / "demo-model")
    """The demo model whose VAE decodes the training renders ("" = clean renders only)."""
    latent_noise: float = 0.4
    decoded_share: float = 0.75
    shape_focus: float = 0.0
    """Share of captions that name the shape (alone or with the style): shapes under textures are
    what the judge reads worst, so a continuation can weight them."""
    init: str = ""
    """A saved judge folder whose weights the run starts from ("" = random initialisation)."""

    @classmethod
    def micro(cls) -> "JudgeTrainConfig":
        return cls(n_images=256, steps=6, batch=32, text_width=32, vision_width=32, vision_layers=1, checkpoint_every=3, vae_from="")


def clip_config(cfg: JudgeTrainConfig) -> CLIPConfig:
    text = dict(vocab_size=49408, hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=32, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision = dict(image_size=64, patch_size=cfg.patch_size, hidden_size=cfg.vision_width, intermediate_size=4 * cfg.vision_width,
                  num_hidden_layers=cfg.vision_layers, num_attention_heads=4)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)


def finer_patches(state: dict[str, torch.Tensor], old: int, new: int) -> dict[str, torch.Tensor]:
    """A CLIP state dict at `old`-pixel patches, rewritten for `new`-pixel patches of the same images
    (old a multiple of new): the network it gives reads an image as the old one reads that image
    upsampled old/new times (nearest), so a finer judge starts where the coarse one stands. The
    patch kernel's blocks are summed (each new pixel stood for a block of upsampled ones) and the
    position embeddings' grid is resized bicubically (the class token's is kept)."""
    if old == new:
        return state
    if old % new:
        raise ValueError(f"a judge at {old}-pixel patches cannot start one at {new}-pixel patches: the new size must divide the old")
    factor, out = old // new, dict(state)
    kernel = state["vision_model.embeddings.patch_embedding.weight"]  # (width, 3, old, old)
    out["vision_model.embeddings.patch_embedding.weight"] = kernel.unflatten(2, (new, factor)).unflatten(4, (new, factor)).sum((3, 5))
    positions = state["vision_model.embeddings.position_embedding.weight"]  # (1 + grid^2, width)
    grid = int(round((len(positions) - 1) ** 0.5))
    cells = positions[1:].t().reshape(1, -1, grid, grid)
    cells = F.interpolate(cells, scale_factor=factor, mode="bicubic", align_corners=False)
    out["vision_model.embeddings.position_embedding.weight"] = torch.cat([positions[:1], cells.flatten(2)[0].t()])
    return out


def caption(scene: Scene, rng: random.Random, shape_focus: float = 0.0) -> tuple[str, frozenset[str]]:
    """A caption naming a random non-empty subset of the scene's attributes (with probability
    `shape_focus` the shape, with or without the style), and that subset."""
    names = list(ATTRIBUTES)
    if rng.random() < shape_focus:
        keep = frozenset({"shape", "style"}) if rng.random() < 0.5 else frozenset({"shape"})
    else:
        keep = frozenset(a for a in names if rng.random() < 0.4) or frozenset({rng.choice(names)})
    if len(keep) == 1 and rng.random() < 0.6:
        (only,) = keep
        text = scene.value(only) + (" background" if only == "background" and rng.random() < 0.5 else "")
    else:
        values = {a: (scene.value(a) if a in keep else None) for a in names}
        text = compose(rng.choice(TRAIN_TEMPLATES), values)
    return rng.choice(PREFIXES) + text, keep


def positives(scenes: list[Scene], captions: list[tuple[Scene, frozenset[str]]]) -> torch.Tensor:
    """(images, captions) boolean matrix: caption j is true of image i."""
    out = torch.zeros(len(scenes), len(captions), dtype=torch.bool)
    for i, scene in enumerate(scenes):
        for j, (source, keep) in enumerate(captions):
            out[i, j] = all(scene.value(a) == source.value(a) for a in keep)
    return out


def augment(images: np.ndarray, rng: random.Random) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], some blurred, all with a little noise."""
    out = []
    for image in images:
        if rng.random() < 0.3:
            image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8))))
        out.append(image)
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return x + torch.randn_like(x) * rng.uniform(0.0, 0.06)


def contrastive_loss(model: CLIPModel, pixels: torch.Tensor, tokens: dict, match: torch.Tensor) -> torch.Tensor:
    out = model(pixel_values=pixels, **tokens)
    logits = out.logits_per_image
    targets_i = match.float() / match.float().sum(1, keepdim=True)
    targets_t = match.t().float() / match.t().float().sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets_i) + F.cross_entropy(logits.t(), targets_t))


def zero_shot_accuracy(model: CLIPModel, tokenizer: CLIPTokenizer, images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Per attribute: share of images whose best-matching bare label is the true value."""
    model.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.no_grad():
        image_features = F.normalize(model.get_image_features(pixel_values=x).pooler_output, dim=-1)
        out = {}
        for attribute, values in ATTRIBUTES.items():
            tokens = tokenizer(list(values), padding=True, return_tensors="pt")
            text_features = F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
            read = (image_features @ text_features.t()).argmax(1).numpy()
            out[attribute] = float(np.mean([values[r] == s.value(attribute) for r, s in zip(read, scenes)]))
    model.train()
    return out


def train(work: Path, out: Path, cfg: JudgeTrainConfig) -> dict[str, dict[str, float]]:
    """Train (resuming from work/checkpoint.safetensors) and save the judge folder to `out`."""
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "train.log", "a", buffering=1)

    def say(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        log.write(line + "\n")

    data_file = work / "data.npz"
    if not data_file.exists():
        images, labels, _ = generate(cfg.n_images, seed=cfg.seed + 7)
        np.savez(work / "data.tmp.npz", images=images, labels=labels)
        (work / "data.tmp.npz").replace(data_file)
        say(f"data: {cfg.n_images} renders")
    data = np.load(data_file)
    images, labels = data["images"], data["labels"]
    decoded = _decoded(work, images, cfg, say)
    scenes = [Scene(*(ATTRIBUTES[a][v] for a, v in zip(ATTRIBUTES, row))) for row in labels]
    held = min(1000, len(images) // 8)
    torch.manual_seed(cfg.seed)
    model = CLIPModel(clip_config(cfg))
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    step = 0
    checkpoint = work / "checkpoint.safetensors"
    if cfg.init and not checkpoint.exists():
        start = CLIPModel.from_pretrained(cfg.init, dtype=torch.float32)
        model.load_state_dict(finer_patches(start.state_dict(), start.config.vision_config.patch_size, cfg.patch_size))
        say(f"started from the weights of {cfg.init} (patches {start.config.vision_config.patch_size} -> {cfg.patch_size} px)")
    if checkpoint.exists():
        state = load_file(str(checkpoint))
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
        step = json.loads((work / "checkpoint.json").read_text())["step"]
        say(f"resumed at step {step} (optimizer state starts fresh)")
    resumed_at = step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s + resumed_at, cfg.steps, cfg.warmup))
    rng = random.Random(cfg.seed * 1000 + step)
    model.train()
    started = time.time()
    while step < cfg.steps:
        index = [rng.randrange(held, len(images)) for _ in range(cfg.batch)]
        batch_scenes = [scenes[i] for i in index]
        captions = [caption(s, rng, cfg.shape_focus) for s in batch_scenes]
        tokens = tokenizer([c for c, _ in captions], padding=True, truncation=True, max_length=32, return_tensors="pt")
        match = positives(batch_scenes, [(s, keep) for s, (_, keep) in zip(batch_scenes, captions)])
        source = decoded if decoded is not None and rng.random() < cfg.decoded_share else images
        loss = contrastive_loss(model, augment(source[index], rng), dict(tokens), match)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        if step % 50 == 0 or step == cfg.steps:
            say(f"step {step}/{cfg.steps} loss {loss.item():.4f} ({(time.time() - started) / 60:.1f} min)")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(work / "checkpoint.tmp"))
            (work / "checkpoint.tmp").replace(checkpoint)
            (work / "checkpoint.json").write_text(json.dumps({"step": step}))
    accuracy = {"renders": zero_shot_accuracy(model, tokenizer, images[:held], scenes[:held])}
    if decoded is not None:
        accuracy["decoded"] = zero_shot_accuracy(model, tokenizer, decoded[:held], scenes[:held])
    say(f"zero-shot accuracy on {held} held-out images: {accuracy}")
    save_judge(model.eval(), tokenizer, out, {"config": asdict(cfg), "zero_shot_accuracy": accuracy, "held_out_images": held})
    return accuracy


def _decoded(work: Path, images: np.ndarray, cfg: JudgeTrainConfig, say) -> np.ndarray | None:
    """The renders through the VAE of cfg.vae_from, half of them from noised latents (cached in work/)."""
    if not cfg.vae_from:
        return None
    path = work / "decoded.npy"
    if not path.exists():
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(str(Path(cfg.vae_from) / "vae")).eval()
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        half = len(x) // 2
        with torch.no_grad():
            out = torch.cat([reconstruct(vae, x[:half]), reconstruct(vae, x[half:], latent_noise=cfg.latent_noise, seed=cfg.seed)])
        np.save(work / "decoded.tmp.npy", ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
        (work / "decoded.tmp.npy").replace(path)
        say(f"decoded {len(x)} renders through {cfg.vae_from}/vae")
    return np.load(path)


def save_judge(model: CLIPModel, tokenizer: CLIPTokenizer, out: Path, record: dict) -> None:
    """A folder that CLIPModel / CLIPProcessor.from_pretrained load, like any CLIP checkpoint, plus
    kscu_judge.json: the labels this judge was trained to tell apart (the vocabulary a domain uses
    to build prompts), the label template, and how it was trained."""
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(str(tmp))  # half the size; the judge loads it as float32
    model.float()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, image_mean=list(MEAN), image_std=list(STD)),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(str(tmp))
    judge = {"template": "{}", "vocabulary": {"subjects": list(SHAPES), "colours": list(COLOURS), "styles": list(STYLES), "backgrounds": list(BACKGROUNDS)},
             **record}
    (tmp / JUDGE_FILE).write_text(json.dumps(judge, indent=2))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("work/shape-clip"))
    parser.add_argument("--out", type=Path, default=Path("assets/shape-clip"))
    parser.add_argument("--micro", action="store_true", help="seconds-long run (tests)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--shape-focus", type=float, default=None, help="share of captions that name the shape (default 0)")
    parser.add_argument("--init", type=Path, default=None, help="start from this saved judge folder's weights (fresh schedule)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    parser.add_argument("--patch-size", type=int, choices=(4, 8), default=None,
                        help="pixels per vision token (default: the --init judge's, else 8)")
    args = parser.parse_args()
    cfg = JudgeTrainConfig.micro() if args.micro else JudgeTrainConfig()
    if args.steps:
        cfg.steps = args.steps
    if args.shape_focus is not None:
        cfg.shape_focus = args.shape_focus
    if args.init is not None:
        if not (args.init / "config.json").is_file():
            parser.error(f"--init {args.init}: not a saved judge folder (no config.json); pass a folder such as assets/shape-clip")
        cfg.init = str(args.init)
        coarse = json.loads((args.init / "config.json").read_text())["vision_config"]["patch_size"]
        cfg.patch_size = args.patch_size or coarse
        if coarse % cfg.patch_size:
            parser.error(f"--patch-size {cfg.patch_size}: the --init judge has {coarse}-pixel patches; give a size that divides it")
    elif args.patch_size is not None:
        cfg.patch_size = args.patch_size
    if args.lr is not None:
        cfg.lr = args.lr
    train(args.work, args.out, cfg)


if __name__ == "__main__":
    main()
