"""experiments/wan2.1-1.3b/reward_forcing_lora.yaml on the tiny stand-in files of
tests/test_experiments_real_configs.py (placeholders replaced, nothing else): it builds a LoRA module on the
loaded stage-1 generator and one step moves the adapters only."""

from __future__ import annotations

import json

import torch

from rfvideo.models.lora import is_adapter_key, lora_options_of
from rfvideo.modules import RewardForcingModule
from test_experiments_real_configs import IMAGE_SIZE, SMALL, VIT, _build, _filled_copy, assets  # noqa: F401


def test_reward_forcing_lora_config_trains_adapters_only(assets, tmp_path):  # noqa: F811
    ir = "--model.init_args.rewards.init_args.terms.image_reward.init_args."
    tiny_ir = [f"{ir}vit={json.dumps(VIT)}", f"{ir}image_size={IMAGE_SIZE}"]
    cli = _build(
        _filled_copy("reward_forcing_lora.yaml", assets, tmp_path), tmp_path, "--trainer.fast_dev_run=1",
        "--model.init_args.accumulate_grad_batches=1", *SMALL, *tiny_ir,
    )  # fmt: skip
    model = cli.model
    assert isinstance(model, RewardForcingModule)
    opts = lora_options_of(model.generator)
    assert opts is not None and opts.rank == 16 and opts.scale == 1.0
    # the base under the adapters is the stage-1 EMA generator, as in the full fine-tuning config
    sd = torch.load(assets["stage1"], weights_only=True)["state_dict"]
    got = model.generator.state_dict()
    for k, v in sd.items():
        if k.startswith("generator_ema.") and k.endswith(".to_q.weight"):
            name = k[len("generator_ema.") :].replace(".weight", ".base_layer.weight")
            assert torch.equal(got[name], v), name
    before = {k: v.clone() for k, v in got.items()}
    cli.trainer.fit(model, cli.datamodule)
    assert cli.trainer.global_step == 1
    (opt,) = cli.trainer.optimizers
    assert opt.param_groups[0]["lr"] == 1.0e-4
    changed = [k for k, v in model.generator.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(is_adapter_key(k) for k in changed)
