"""rfvideo.models."""

from rfvideo.models.causal_options import CausalOptions as CausalOptions
from rfvideo.models.causal_wan import CausalWanTransformer as CausalWanTransformer
from rfvideo.models.embedding_precompute import PromptEmbeddingStore as PromptEmbeddingStore
from rfvideo.models.embedding_precompute import precompute_prompt_embeddings as precompute_prompt_embeddings
from rfvideo.models.kv_cache import KVCache as KVCache
from rfvideo.models.text_encoder import TextEncoder as TextEncoder
from rfvideo.models.text_encoder import clean_prompt as clean_prompt
from rfvideo.models.text_encoder import validate_prompts as validate_prompts
from rfvideo.models.vae import WanVAE as WanVAE
from rfvideo.models.vae import latent_frames_for_pixel_frames as latent_frames_for_pixel_frames
from rfvideo.models.vae import num_latent_frames as num_latent_frames
from rfvideo.models.vae import num_pixel_frames as num_pixel_frames
