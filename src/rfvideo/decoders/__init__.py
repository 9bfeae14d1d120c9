"""Decoders for the pipeline's `vae` slot: the protocol, the registry, TinyVideoDecoder, LightVAE, overlap."""

from rfvideo.decoders.fidelity import FidelityReport, reconstruction_psnr
from rfvideo.decoders.light_vae import LIGHT_VAE_BASE_DIM, load_light_vae, wan_vae_from_original_state_dict
from rfvideo.decoders.overlap import decode_overlapped, decode_sequential
from rfvideo.decoders.protocol import StreamDecoder, VideoDecoder
from rfvideo.decoders.registry import DECODERS, DecoderSpec, build_decoder
from rfvideo.decoders.tiny import TinyStreamDecoder, TinyVideoDecoder, wan21_latent_stats
from rfvideo.decoders.weights import load_state_dict_file, resolve_weights_file

__all__ = [
    "DECODERS",
    "LIGHT_VAE_BASE_DIM",
    "DecoderSpec",
    "FidelityReport",
    "StreamDecoder",
    "TinyStreamDecoder",
    "TinyVideoDecoder",
    "VideoDecoder",
    "build_decoder",
    "decode_overlapped",
    "decode_sequential",
    "load_light_vae",
    "load_state_dict_file",
    "reconstruction_psnr",
    "resolve_weights_file",
    "wan21_latent_stats",
    "wan_vae_from_original_state_dict",
]
