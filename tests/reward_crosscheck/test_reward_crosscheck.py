"""Cross-check: rfvideo's reward adapters vs the official reference packages on the same random weights.

Runs only inside the isolated environment (``make reward-env``; ``make test-rewards-ref``):
    PYTHONPATH=src .venv-rewards/bin/python -m pytest -m rewards_ref -p no:cacheprovider \
        tests/reward_crosscheck
Every model is built with RANDOM weights from a tiny config (nothing is downloaded), saved in the original
checkpoint layout, and loaded through both the official scoring path and rfvideo's loader. Frames are seeded
random uint8 pictures of 480x832-shaped (and transposed) sizes; prompts carry curly quotes, HTML entities and
mojibake. References:

- HPSv2: ``hpsv2.img_score.score`` (its vendored open_clip: ``light_augmentation`` letterbox, open_clip
  tokenizer), with ``model_dict`` pre-filled with a tiny open_clip model from its own factory.
- PickScore: the authors' inference recipe on transformers' ``AutoProcessor`` (PickScore has no package).
- CLIP score: torchmetrics' ``clip_score`` per-sample update (100 * cos).
- LAION aesthetic MLP: ImageReward's ``AestheticScore`` (the improved-aesthetic-predictor code) on OpenAI
  ``clip.load`` of a random OpenAI-layout checkpoint.
- ImageReward: ``ImageReward.ImageReward.score`` with its BLIP ViT / med.py BERT / MLP at tiny sizes.

PIL-based references quantise the resized image to uint8 and rfvideo's differentiable path does not, so
those scores agree to a tolerance stated per test (measured on these seeds); the letterbox of HPSv2 runs on
float tensors on both sides and agrees to float round-off.

Shape legend: n images, H W pixel size, d width.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("hpsv2", reason="needs the isolated reward environment (make reward-env)")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    BertTokenizer,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    CLIPTokenizerFast,
)

from rfvideo.rewards.aesthetic import AestheticReward  # noqa: E402
from rfvideo.rewards.clip_score import ClipScoreReward, ClipSimilarityReward, _features  # noqa: E402
from rfvideo.rewards.hps import HPSv2Reward, open_clip_to_hf  # noqa: E402
from rfvideo.rewards.image_reward import ImageReward as RfImageReward  # noqa: E402
from rfvideo.rewards.pickscore import PickScoreReward  # noqa: E402

pytestmark = pytest.mark.rewards_ref

SIZES = [(60, 104), (104, 60)]  # 480x832 frames (and portrait), scaled down
IMAGE = 32  # tiny ViT input side
PROMPTS = [
    "A dog\u2019s \u201cbone\u201d &amp; a cat",
    "fish &amp;amp; chips at the caf\u00c3\u00a9",  # mojibake that ftfy repairs
    "  a   red\tcar on the  road ",
]
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _smooth_uint8(h: int, w: int, g: torch.Generator) -> np.ndarray:
    """Seeded natural-ish picture (low-frequency colour + texture), uint8 `(H W 3)`."""
    low = torch.rand(1, 3, max(h // 12, 2), max(w // 12, 2), generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
    img = img * 0.75 + 0.25 * torch.rand(3, h, w, generator=g)
    return (img * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    g = torch.Generator().manual_seed(0)
    return [_smooth_uint8(h, w, g) for h, w in SIZES for _ in range(2)]


def _video(frame: np.ndarray) -> torch.Tensor:
    """uint8 `(H W 3)` -> `(1 1 3 H W)` float in [0, 1], what rfvideo's rewards receive."""
    return torch.from_numpy(frame).permute(2, 0, 1).float().div(255)[None, None]


def _perturb_(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Add seeded noise to every parameter (LayerNorm weights and zero biases included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _clip_bpe_files(root: Path) -> tuple[Path, Path]:
    """vocab.json / merges.txt of OpenAI CLIP's BPE, built from the file open_clip ships, the way
    open_clip's SimpleTokenizer builds its table (the same files transformers' CLIP tokenizers ship)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return root / "vocab.json", root / "merges.txt"


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> CLIPTokenizerFast:
    """The full 49408-token CLIP tokenizer (fast, as laion/openai hub repos load) built offline."""
    vocab, merges = _clip_bpe_files(tmp_path_factory.mktemp("bpe"))
    slow_dir = vocab.parent / "slow"
    CLIPTokenizer(str(vocab), str(merges), pad_token="<|endoftext|>").save_pretrained(slow_dir)
    return CLIPTokenizerFast.from_pretrained(slow_dir)


def _hf_clip_config(*, width: int, heads: int, act: str, projection_dim: int) -> CLIPConfig:
    common = dict(
        hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2, num_attention_heads=heads
    )
    return CLIPConfig(
        text_config=dict(
            common,
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_act=act,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        ),
        vision_config=dict(common, image_size=IMAGE, patch_size=8, hidden_act=act),
        projection_dim=projection_dim,
    )


def _save_processor(path: Path, tokenizer: CLIPTokenizerFast, config: CLIPConfig | None = None) -> Path:
    """A CLIP processor folder (tokenizer + 224-style image processor at IMAGE) as hub CLIP repos hold."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE},
        crop_size={"height": IMAGE, "width": IMAGE},
        image_mean=list(OPENAI_MEAN),
        image_std=list(OPENAI_STD),
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    if config is not None:
        config.save_pretrained(path)
    return path


# --------------------------------------------------------------------------------------------- HPSv2


@pytest.fixture(scope="module")
def hps(tmp_path_factory: pytest.TempPathFactory, clip_tokenizer: CLIPTokenizerFast):
    """(hpsv2's img_score module ready to score, rfvideo's HPSv2Reward, the checkpoint path)."""
    root = tmp_path_factory.mktemp("hps")
    os.environ["HPS_ROOT"] = str(root / "hps_root")  # hpsv2 creates its cache folder at import/score
    hoc = importlib.import_module("hpsv2.src.open_clip")
    img_score = importlib.import_module("hpsv2.img_score")
    # A ViT-H-14-shaped open_clip config at tiny width (same code path: VisionTransformer + TextTransformer,
    # GELU, the 49408-token vocabulary, 77-token context).
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": IMAGE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    (root / "cfg").mkdir()
    (root / "cfg" / "HPS-tiny.json").write_text(json.dumps(cfg))
    hoc.add_model_config(root / "cfg")
    torch.manual_seed(0)
    model, _, preprocess_val = hoc.create_model_and_transforms(
        "HPS-tiny", None, precision="fp32", device="cpu", light_augmentation=True, output_dict=True
    )
    _perturb_(model, seed=1)
    ckpt = root / "HPS_v2_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)  # the released layout
    # img_score.score builds ViT-H-14 with pretrained weights on first use; give it ours instead.
    img_score.model_dict["model"] = model
    img_score.model_dict["preprocess_val"] = preprocess_val
    proc = _save_processor(
        root / "processor", clip_tokenizer, _hf_clip_config(width=32, heads=2, act="gelu", projection_dim=16)
    )
    reward = HPSv2Reward.from_pretrained(ckpt, processor_path=proc)
    return img_score, reward, ckpt


def test_hps_tokens_match_open_clip(hps) -> None:
    """rfvideo's cleaned prompt through transformers' tokenizer == hpsv2's open_clip token ids."""
    _, reward, _ = hps
    from hpsv2.src.open_clip import tokenize

    changed = 0
    long = "a \u201cvery\u201d long &amp; winding prompt, " * 12  # > 77 tokens: both truncate, EOT kept last
    for prompt in [*PROMPTS, long]:
        ref = tokenize([prompt])[0]
        n = int(ref.argmax()) + 1  # up to and including <end_of_text> (the largest id)
        ours = reward.tokenizer([reward.text_clean(prompt)], truncation=True, max_length=77)["input_ids"][0]
        assert ours == ref[:n].tolist(), prompt
        raw = reward.tokenizer([prompt], truncation=True, max_length=77)["input_ids"][0]
        changed += raw != ours
    assert changed >= 3  # the curly-quote / entity / mojibake prompts really need the cleaning


def test_hps_letterbox_matches_hpsv2_transform(hps, frames) -> None:
    img_score, reward, _ = hps
    for frame in frames:
        ref = img_score.model_dict["preprocess_val"](Image.fromarray(frame))  # (3 s s)
        ours = reward.preprocess(_video(frame)[0])[0]
        assert ours.shape == ref.shape == (3, IMAGE, IMAGE)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_hps_score_matches_hpsv2(hps, frames) -> None:
    img_score, reward, ckpt = hps
    for i, frame in enumerate(frames):
        prompt = PROMPTS[i % len(PROMPTS)]
        ref = float(img_score.score(Image.fromarray(frame), prompt, cp=str(ckpt))[0])
        ours = float(reward(_video(frame), [prompt]))
        assert abs(ours - ref) < 1e-5, (i, ours, ref)


# --------------------------------------------------------------------------------------------- PickScore


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory: pytest.TempPathFactory, clip_tokenizer: CLIPTokenizerFast):
    """A random ViT-H-14-shaped transformers CLIPModel (GELU) and its processor folder."""
    root = tmp_path_factory.mktemp("clip")
    config = _hf_clip_config(width=32, heads=2, act="gelu", projection_dim=16)
    torch.manual_seed(2)
    model = CLIPModel(config).eval()
    _perturb_(model, seed=3)
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(100.0)))
    model.save_pretrained(root / "model")
    _save_processor(root / "model", clip_tokenizer)
    return root / "model", _save_processor(root / "processor", clip_tokenizer)


def _pickscore_reference(model: CLIPModel, processor, image: Image.Image, prompt: str) -> float:
    """PickScore's published inference code (yuvalkirstain/PickScore README), one image."""
    image_inputs = processor(
        images=[image], padding=True, truncation=True, max_length=77, return_tensors="pt"
    )
    text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        image_embs = model.get_image_features(**image_inputs)
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_embs = model.get_text_features(**text_inputs)
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
    return float(scores[0])


def _grey_levels(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Mean and max |difference| of two normalised CLIP inputs, in 8-bit grey levels."""
    diff = (ours - ref).abs() * torch.tensor(OPENAI_STD).view(-1, 3, 1, 1) * 255
    return float(diff.mean()), float(diff.max())


def _image_embeds(reward: ClipSimilarityReward, pixels: torch.Tensor) -> torch.Tensor:
    """rfvideo's model path on already preprocessed pixels `(n 3 s s)` -> `(n d)` normalised."""
    with torch.no_grad():
        return torch.nn.functional.normalize(
            _features(reward.model.get_image_features(pixel_values=pixels)), dim=-1
        )


def test_pickscore_matches_its_processor_recipe(clip_dirs, frames) -> None:
    model_dir, proc_dir = clip_dirs
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(proc_dir)
    reward = PickScoreReward.from_pretrained(model_dir, processor_path=proc_dir)
    assert reward.text_clean is None  # transformers' processor does not clean prompts
    diffs = []
    for i, frame in enumerate(frames):
        prompt = PROMPTS[i % len(PROMPTS)]
        ids = processor(text=prompt, truncation=True, max_length=77)["input_ids"]
        ours_ids = reward.tokenizer([prompt], truncation=True, max_length=reward.max_length)["input_ids"][0]
        assert ours_ids == ids
        # Pixels: PIL rounds the resized image to uint8, rfvideo stays in float (test_rewards_preprocess.py).
        ref_pixels = processor(images=[Image.fromarray(frame)], return_tensors="pt")["pixel_values"]
        mean, worst = _grey_levels(reward.preprocess(_video(frame)[0]), ref_pixels)
        assert mean < 0.35 and worst < 1.5, (i, mean, worst)
        # Model math on the processor's own pixels: exact.
        cos = (_image_embeds(reward, ref_pixels) * reward.text_features([prompt])).sum(-1)
        ref = _pickscore_reference(model, processor, Image.fromarray(frame), prompt)
        assert abs(float(cos * reward.model.logit_scale.exp()) - ref) < 1e-4
        diffs.append(abs(float(reward(_video(frame), [prompt])) - ref))
    # End to end, on the 100 * cos scale: only PIL's uint8 rounding differs (measured max 0.11 here).
    assert max(diffs) < 0.25, diffs


# --------------------------------------------------------------------------------------------- CLIP score


def test_clip_score_matches_torchmetrics(clip_dirs, frames) -> None:
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update

    model_dir, _ = clip_dirs
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    reward = ClipScoreReward.from_pretrained(model_dir, scale="logit")  # exp(logit_scale) = 100 here
    images = [torch.from_numpy(f).permute(2, 0, 1).contiguous() for f in frames]  # uint8 (3 H W)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(frames))]
    with torch.no_grad():
        ref, n = _clip_score_update(images, prompts, model, processor)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    exact = 100 * (_image_embeds(reward, pixels) * reward.text_features(prompts)).sum(-1)
    assert n == len(frames)
    torch.testing.assert_close(exact, ref.float(), atol=1e-4, rtol=0)  # same pixels: same score
    ours = torch.stack([reward(_video(f), [p])[0] for f, p in zip(frames, prompts)])
    torch.testing.assert_close(ours, ref.float(), atol=0.25, rtol=0)  # PIL's uint8 rounding, as above


# --------------------------------------------------------------------------------------------- aesthetic


@pytest.fixture(scope="module")
def aesthetic(tmp_path_factory: pytest.TempPathFactory, clip_tokenizer: CLIPTokenizerFast):
    """(ImageReward's AestheticScore on OpenAI clip.load, rfvideo's AestheticReward) on the same weights."""
    import clip

    root = tmp_path_factory.mktemp("aesthetic")
    # OpenAI CLIP at tiny size (widths 64: its builder derives heads = width // 64), 768-d embedding as
    # ViT-L/14 so the head's input matches the released one.
    torch.manual_seed(4)
    oa = clip.model.CLIP(768, IMAGE, 2, 64, 8, 77, 49408, 64, 1, 2).float()
    _perturb_(oa, seed=5, scale=0.02)
    # clip.load's build_model casts the model to fp16 before loading: store fp16-exact values so both sides
    # hold the same numbers.
    sd = {k: v.half().float().contiguous() for k, v in oa.state_dict().items()}
    torch.save(sd, root / "ViT-tiny.pt")
    model_mod = _import_image_reward("ImageReward.models.AestheticScore")
    torch.manual_seed(6)
    head = model_mod.MLP(768)
    _perturb_(head, seed=7, scale=0.05)
    torch.save(head.state_dict(), root / "sac+logos+ava1-l14-linearMSE.pth")

    # The official class; its `clip.load("ViT-L/14")` replaced by what clip.load does for a state-dict file
    # (build_model, .float() on the CPU, _transform at the model's resolution). clip.load itself cannot read
    # one under torch >= 2.6: its failed torch.jit.load attempt leaves the file at EOF for torch.load.
    def load(name: str, device: str = "cpu", **kw):
        model = clip.model.build_model(torch.load(root / "ViT-tiny.pt", weights_only=True)).to(device).float()
        return model, clip.clip._transform(model.visual.input_resolution)

    real_load = model_mod.clip.load
    try:
        model_mod.clip.load = load
        official = model_mod.AestheticScore(download_root=str(root), device="cpu")
    finally:
        model_mod.clip.load = real_load
    official.mlp.load_state_dict(torch.load(root / "sac+logos+ava1-l14-linearMSE.pth", weights_only=True))
    official.eval()
    # rfvideo: the transformers CLIPModel converted from the same OpenAI-layout weights (QuickGELU).
    config = _hf_clip_config(width=64, heads=1, act="quick_gelu", projection_dim=768)
    hf = CLIPModel(config).eval()
    missing, unexpected = hf.load_state_dict(open_clip_to_hf(sd), strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing)
    hf.save_pretrained(root / "clip")
    _save_processor(root / "clip", clip_tokenizer)
    reward = AestheticReward.from_pretrained(root / "sac+logos+ava1-l14-linearMSE.pth", root / "clip")
    return official, reward, root


def test_aesthetic_matches_official(aesthetic, frames) -> None:
    official, reward, root = aesthetic
    diffs = []
    for i, frame in enumerate(frames):
        path = root / f"frame{i}.png"
        Image.fromarray(frame).save(path)
        with torch.no_grad():
            ref = official.score("unused", str(path))
            # Pixels: OpenAI CLIP's torchvision transform (PIL resize, torchvision CenterCrop placement).
            ref_pixels = official.preprocess(Image.open(path))[None]
            mean, worst = _grey_levels(reward.preprocess(_video(frame)[0]), ref_pixels)
            assert mean < 0.35 and worst < 1.5, (i, mean, worst)
            # Model math on the official pixels: exact.
            emb = torch.nn.functional.normalize(
                _features(reward.clip.get_image_features(pixel_values=ref_pixels))
            )
            exact = float(
                official.mlp(torch.nn.functional.normalize(official.clip_model.encode_image(ref_pixels)))
            )
            assert abs(float(reward.head(emb)) - exact) < 1e-5
        diffs.append(abs(float(reward(_video(frame), ["unused"])) - ref))
    assert max(diffs) < 0.01, diffs


# --------------------------------------------------------------------------------------------- ImageReward

IR_VIT = dict(embed_dim=32, depth=2, num_heads=2)
IR_MED = dict(
    architectures=["BertModel"],
    attention_probs_dropout_prob=0.1,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    hidden_size=24,
    initializer_range=0.02,
    intermediate_size=48,
    layer_norm_eps=1e-12,
    max_position_embeddings=40,
    model_type="bert",
    num_attention_heads=2,
    num_hidden_layers=2,
    pad_token_id=0,
    type_vocab_size=2,
    vocab_size=0,  # set from the word list + [DEC] + [ENC]
    encoder_width=768,
    add_cross_attention=True,
)
IR_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "'", "s", "bone", "&", "cat", "fish"]
IR_WORDS += [
    "chips",
    "at",
    "the",
    "cafe",
    "red",
    "car",
    "on",
    "road",
    '"',
    "##s",
    "\u2019",
    "\u201c",
    "\u201d",
]


def _import_image_reward(name: str) -> types.ModuleType:
    """Import an ImageReward submodule without its package `__init__` (which imports the ReFL trainer:
    diffusers, datasets, accelerate)."""
    if "ImageReward" not in sys.modules:
        spec = importlib.util.find_spec("ImageReward")
        pkg = types.ModuleType("ImageReward")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["ImageReward"] = pkg
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def image_reward(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("image_reward")
    (root / "bert").mkdir()
    (root / "bert" / "vocab.txt").write_text("\n".join(IR_WORDS) + "\n")
    BertTokenizer(str(root / "bert" / "vocab.txt")).save_pretrained(root / "bert")
    med = dict(IR_MED, vocab_size=len(IR_WORDS) + 2)
    (root / "med_config.json").write_text(json.dumps(med))

    ir_mod = _import_image_reward("ImageReward.ImageReward")
    blip_mod = _import_image_reward("ImageReward.models.BLIP.blip")
    vit_mod = _import_image_reward("ImageReward.models.BLIP.vit")
    med_mod = _import_image_reward("ImageReward.models.BLIP.med")

    # BLIP's init_tokenizer (bert-base-uncased + [DEC] + [ENC]) on the local vocabulary.
    real = blip_mod.BertTokenizer.from_pretrained
    try:
        blip_mod.BertTokenizer.from_pretrained = lambda name, **kw: real(str(root / "bert"), **kw)
        tokenizer = blip_mod.init_tokenizer()
    finally:
        blip_mod.BertTokenizer.from_pretrained = real

    torch.manual_seed(8)
    official = ir_mod.ImageReward.__new__(ir_mod.ImageReward)
    torch.nn.Module.__init__(official)
    official.device = "cpu"
    official.blip = torch.nn.Module()
    official.blip.visual_encoder = vit_mod.VisionTransformer(img_size=IMAGE, patch_size=16, **IR_VIT)
    encoder_config = med_mod.BertConfig.from_json_file(str(root / "med_config.json"))
    encoder_config.encoder_width = IR_VIT["embed_dim"]  # what BLIP_Pretrain sets
    official.blip.text_encoder = med_mod.BertModel(config=encoder_config, add_pooling_layer=False)
    official.blip.tokenizer = tokenizer
    official.preprocess = ir_mod._transform(IMAGE)
    official.mlp = ir_mod.MLP(med["hidden_size"])
    official.mean, official.std = 0.16717362830052426, 1.0333394966054072
    _perturb_(official, seed=9, scale=0.05)
    official.eval()
    sd = dict(official.state_dict())
    g = torch.Generator().manual_seed(10)  # BLIP's contrastive projections ship in ImageReward.pt
    sd["blip.vision_proj.weight"] = torch.randn(16, IR_VIT["embed_dim"], generator=g)
    sd["blip.vision_proj.bias"] = torch.randn(16, generator=g)
    sd["blip.text_proj.weight"] = torch.randn(16, med["hidden_size"], generator=g)
    sd["blip.text_proj.bias"] = torch.randn(16, generator=g)
    torch.save(sd, root / "ImageReward.pt")
    vit = dict(
        hidden_size=IR_VIT["embed_dim"],
        num_hidden_layers=IR_VIT["depth"],
        num_attention_heads=IR_VIT["num_heads"],
        intermediate_size=4 * IR_VIT["embed_dim"],
    )
    ours = RfImageReward.from_pretrained(
        root / "ImageReward.pt",
        med_config=root / "med_config.json",
        tokenizer=root / "bert",
        vit=vit,
        image_size=IMAGE,
    )
    return official, ours


def test_image_reward_tokens_match(image_reward) -> None:
    official, ours = image_reward
    for prompt in PROMPTS:
        ref = official.blip.tokenizer(prompt, padding="max_length", truncation=True, max_length=35)
        ids, mask = ours.tokenize([prompt], torch.device("cpu"))
        assert ids[0].tolist() == ref["input_ids"] and mask[0].tolist() == ref["attention_mask"], prompt


def test_image_reward_score_matches_official(image_reward, frames) -> None:
    official, ours = image_reward
    diffs = []
    for i, frame in enumerate(frames):
        prompt = PROMPTS[i % len(PROMPTS)]
        with torch.no_grad():
            ref = official.score(prompt, Image.fromarray(frame))
            mean, worst = _grey_levels(
                ours.preprocess(_video(frame)[0]), official.preprocess(Image.fromarray(frame))
            )
            assert mean < 0.35 and worst < 1.5, (i, mean, worst)
            # Same pixels on both sides (rfvideo's float preprocessing): the model math must agree exactly.
            pixels = ours.preprocess(_video(frame)[0])
            ids, mask = ours.tokenize([prompt], torch.device("cpu"))
            exact = float(official.score_gard(ids, mask, pixels))
        assert abs(float(ours.score_pixels(pixels, ids, mask)) - exact) < 1e-5
        diffs.append(abs(float(ours(_video(frame), [prompt])) - ref))
    assert max(diffs) < 0.02, diffs
