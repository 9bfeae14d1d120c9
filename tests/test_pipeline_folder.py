"""The pipeline folder: save -> from_pretrained gives identical frames (plain and the demo's positioned
generator, with the demo's codec and word-level text encoder); diffusers' own `WanTransformer3DModel` reads
the transformer; a folder that cannot be restored exactly is refused with one line, before any weight loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel

from rfvideo.demo.world.keyframe_codec import KeyframeCodec
from rfvideo.demo.world.text_encoders import word_text_encoder
from rfvideo.models.tiny import tiny_causal_wan, tiny_wan_vae
from rfvideo.pipeline import FewStepFlowScheduler, RFVideoPipeline
from rfvideo.sampling import FlowMatchSchedule

TEXT_WIDTH = 24


def demo_like_pipe(positioned: bool, vae: torch.nn.Module | None = None) -> RFVideoPipeline:
    """The demo world's component classes at a tiny size (random, seeded); `vae` replaces the codec."""
    vae = vae if vae is not None else KeyframeCodec(spatial_factor=4, cells="mean", latents_std=0.25)
    model = tiny_causal_wan(
        in_channels=vae.latent_channels, text_dim=TEXT_WIDTH, num_frames_per_chunk=1, seed=1, init_scale=0.2,
        absolute_positions=positioned,
    )  # fmt: skip
    if positioned:  # the position tables start at zero: make them matter
        with torch.no_grad():
            for name in ("pos_frame", "pos_row", "pos_col"):
                p = getattr(model, name)
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.5)
    text = word_text_encoder(d_model=TEXT_WIDTH, max_length=8, seed=3, num_layers=0)
    return RFVideoPipeline(
        transformer=model.eval(),
        vae=vae,
        scheduler=FewStepFlowScheduler.from_schedule(FlowMatchSchedule(denoising_steps=(1000, 500))),
        text_encoder=text,
        num_frames=9,
        height=16,
        width=16,
    )


def frames(pipe: RFVideoPipeline, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return pipe("a red square moving left", generator=g, output_type="pt", progress=False).frames


@pytest.mark.parametrize("positioned", [False, True])
def test_save_then_load_gives_identical_frames(tmp_path: Path, positioned: bool) -> None:
    pipe = demo_like_pipe(positioned)
    want = frames(pipe)
    pipe.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    cls = "PositionedCausalWan" if positioned else "CausalWanTransformer"
    assert index["transformer"][1] == cls and index["vae"] == [
        "rfvideo.demo.world.keyframe_codec",
        "KeyframeCodec",
    ]
    assert index["num_frames"] == 9 and set(index["_rfvideo"]["digests"]) >= {
        "transformer/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    }
    loaded = RFVideoPipeline.from_pretrained(tmp_path / "p")
    assert type(loaded.transformer).__name__ == cls and loaded.load_seconds > 0
    assert loaded.scheduler.timesteps == pipe.scheduler.timesteps
    assert torch.equal(frames(loaded), want)
    if positioned:  # the tables came back: without them the video differs
        for name in ("pos_frame", "pos_row", "pos_col"):
            assert torch.equal(getattr(loaded.transformer, name), getattr(pipe.transformer, name))


def test_diffusers_reads_the_transformer_weights(tmp_path: Path) -> None:
    pipe = demo_like_pipe(False)
    pipe.save_pretrained(tmp_path / "p")
    ref = WanTransformer3DModel.from_pretrained(tmp_path / "p", subfolder="transformer")
    ours = pipe.transformer.state_dict()
    theirs = ref.state_dict()
    assert set(theirs) == set(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


def test_wan_vae_component_round_trip(tmp_path: Path) -> None:
    pipe = demo_like_pipe(False, vae=tiny_wan_vae(seed=2))  # a real AutoencoderKLWan behind WanVAE
    want = frames(pipe)
    pipe.save_pretrained(tmp_path / "p")
    assert torch.equal(frames(RFVideoPipeline.from_pretrained(tmp_path / "p")), want)


def test_references_keep_components_where_they_are(tmp_path: Path) -> None:
    pipe = demo_like_pipe(False)
    want = frames(pipe)
    pipe.vae.save_pretrained(tmp_path / "shared" / "codec")
    pipe.save_pretrained(tmp_path / "p", references={"vae": (str(tmp_path / "shared"), "codec")})
    assert not (tmp_path / "p" / "vae").exists()
    assert torch.equal(frames(RFVideoPipeline.from_pretrained(tmp_path / "p")), want)


def _saved(tmp_path: Path) -> Path:
    demo_like_pipe(False).save_pretrained(tmp_path / "p")
    return tmp_path / "p"


def _edit_index(folder: Path, **changes) -> None:
    path = folder / "model_index.json"
    index = json.loads(path.read_text()) | changes
    path.write_text(json.dumps(index))


def test_refusals_are_one_line_before_any_weight_loads(tmp_path: Path, monkeypatch) -> None:
    folder = _saved(tmp_path)
    # a folder without an index (the old transformer-only export) is named as such
    with pytest.raises(
        ValueError, match="has no model_index.json: not a pipeline folder .*CausalWanTransformer"
    ):
        RFVideoPipeline.from_pretrained(folder / "transformer")
    # an unknown class is refused before its module is imported
    _edit_index(folder, vae=["os", "system"])
    imported = []
    monkeypatch.setattr("importlib.import_module", lambda name: imported.append(name))
    with pytest.raises(ValueError, match=r"vae class 'os.system' is not allowed") as e:
        RFVideoPipeline.from_pretrained(folder)
    assert imported == [] and "\n" not in str(e.value)
    monkeypatch.undo()
    # allow_classes lets a trusted one through (here: the real class under its real name)
    _edit_index(folder, vae=["rfvideo.demo.world.keyframe_codec", "KeyframeCodec"])
    RFVideoPipeline.from_pretrained(folder, allow_classes=["x.Y"])
    _edit_index(folder, extra_component=["rfvideo.models", "CausalWanTransformer"])
    with pytest.raises(ValueError, match="unknown entries"):
        RFVideoPipeline.from_pretrained(folder)


def test_corrupt_or_lossy_folders_are_refused(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its recorded SHA-256"):
        RFVideoPipeline.from_pretrained(folder)
    # a positioned generator's folder named as the plain class would drop the position tables: refused
    folder2 = tmp_path / "q"
    demo_like_pipe(True).save_pretrained(folder2)
    _edit_index(folder2, transformer=["rfvideo.models.causal_wan", "CausalWanTransformer"])
    with pytest.raises(ValueError, match="PositionedCausalWan"):
        RFVideoPipeline.from_pretrained(folder2)


def test_save_refuses_nonfinite_weights_and_a_used_folder(tmp_path: Path) -> None:
    pipe = demo_like_pipe(False)
    with torch.no_grad():
        pipe.transformer.proj_out.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="'proj_out.weight' holds NaN/Inf"):
        pipe.save_pretrained(tmp_path / "p")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(ValueError, match="not an empty folder"):
        demo_like_pipe(False).save_pretrained(tmp_path / "used")


def test_a_tiny_decoder_in_the_slot_saves_and_loads_back(tmp_path: Path) -> None:
    """The decoder registry's tiny decoder replaces the VAE (`set_decoder`) and the folder restores it."""
    from rfvideo.decoders.tiny import TinyVideoDecoder

    pipe = demo_like_pipe(False, vae=tiny_wan_vae(seed=2))
    tiny = TinyVideoDecoder(latent_channels=4, widths=(8, 8, 8, 8)).eval()
    with torch.no_grad():
        for p in tiny.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    pipe.set_decoder(tiny)
    want = frames(pipe)
    assert want.shape == (1, 9, 3, 16, 16) and want.std() > 1e-3
    pipe.save_pretrained(tmp_path / "p")
    loaded = RFVideoPipeline.from_pretrained(tmp_path / "p")
    assert type(loaded.vae).__name__ == "TinyVideoDecoder" and torch.equal(frames(loaded), want)
    with pytest.raises(ValueError, match="takes 3 latent channels; the transformer makes 4"):
        pipe.set_decoder(TinyVideoDecoder(latent_channels=3, widths=(8, 8, 8, 8)))


def test_the_plain_loader_refuses_a_positioned_folder(tmp_path: Path) -> None:
    """`CausalWanTransformer.from_pretrained` on the demo's positioned generator would drop its position
    tables: refused in one line; the subclass's own loader reads it whole."""
    from rfvideo.models import CausalWanTransformer
    from rfvideo.models.positioned_wan import PositionedCausalWan

    pipe = demo_like_pipe(True)
    pipe.transformer.save_pretrained(tmp_path / "t")
    with pytest.raises(ValueError, match="holds a PositionedCausalWan") as e:
        CausalWanTransformer.from_pretrained(tmp_path / "t")
    assert "\n" not in str(e.value)
    again = PositionedCausalWan.from_pretrained(tmp_path / "t")
    assert torch.equal(again.pos_row, pipe.transformer.pos_row)
