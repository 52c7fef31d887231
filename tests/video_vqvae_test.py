import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.videogpt.models.video_vqvae import VideoVQVAE, vqvae_loss


def small(downsample, **kwargs):
  return VideoVQVAE(hidden=16, residual_units=8, num_res_layers=1, num_codes=32, code_dim=8,
                    downsample=downsample, **kwargs)


@pytest.mark.parametrize('downsample,latent', [((2, 2, 2), (8, 8, 8)), ((4, 2, 2), (4, 8, 8)),
                                               ((4, 4, 4), (4, 4, 4)), ((1, 2, 2), (16, 8, 8))])
def test_shapes_for_each_downsampling(downsample, latent):
  model = small(downsample)
  videos = jax.random.uniform(jax.random.key(0), (2, 16, 16, 16, 3), minval=-0.5, maxval=0.5)
  variables = model.init(jax.random.key(1), videos)
  (reconstructions, quantized), updated = model.apply(
      variables, videos, train=True, rngs={'codebook': jax.random.key(2)},
      mutable=['batch_stats', 'codebook'])
  assert reconstructions.shape == videos.shape
  assert quantized.codes.shape == (2, *latent) and quantized.quantized.shape == (2, *latent, 8)
  assert bool(updated['codebook']['codebook']['initialized'])
  decoded = model.apply({**variables, **updated}, quantized.codes, method=VideoVQVAE.decode_codes)
  assert decoded.shape == videos.shape
  loss, reconstruction = vqvae_loss(videos, reconstructions, quantized)
  assert np.isfinite(float(loss)) and float(loss) >= float(reconstruction)


def test_reference_frame_codes_carry_only_the_change():
  model = small((2, 2, 2), reference_frame=3)
  videos = jax.random.uniform(jax.random.key(0), (2, 8, 16, 16, 3), minval=-0.5, maxval=0.5)
  variables = model.init(jax.random.key(1), videos)
  reference = videos[:, 3]
  # The decoder's last layer starts at zero: a new model reconstructs every frame as frame 3.
  reconstructions, quantized = model.apply(variables, videos)
  np.testing.assert_array_equal(reconstructions, jnp.broadcast_to(reference[:, None], videos.shape))
  # Once that layer has weights, its output is added to frame 3, from codes alone.
  decoder = dict(variables['params']['decoder'])
  last = max((k for k in decoder if k.startswith('UpConv3D')), key=lambda k: int(k.split('_')[1]))
  decoder[last] = {**decoder[last], 'kernel': jax.random.normal(
      jax.random.key(2), decoder[last]['kernel'].shape) * 0.1}
  variables = {**variables, 'params': {**variables['params'], 'decoder': decoder}}
  reconstructions, quantized = model.apply(variables, videos)
  assert float(jnp.abs(reconstructions - reference[:, None]).max()) > 1e-2
  decoded = model.apply(variables, quantized.codes, reference, method=VideoVQVAE.decode_codes)
  np.testing.assert_allclose(decoded, reconstructions, atol=1e-5)
  with pytest.raises(ValueError, match=r'reference_frame=3 decodes relative.*\[B, H, W, 3\]'):
    model.apply(variables, quantized.codes, method=VideoVQVAE.decode_codes)
  with pytest.raises(ValueError, match=r'reference_frame=3 must lie in \[0, 2\)'):
    model.init(jax.random.key(1), videos[:, :2])


@pytest.mark.parametrize('reference_frame', [None, 3])
def test_the_encoder_sees_the_reference_frame_beside_every_frame(reference_frame):
  """Without attention, the last latent step of 16 frames reads frames 9..15 only; with
  reference_frame=3 it reads frame 3 too."""
  model = small((2, 2, 2), attention=False, reference_frame=reference_frame)
  videos = jax.random.uniform(jax.random.key(0), (1, 16, 16, 16, 3), minval=-0.5, maxval=0.5)
  variables = model.init(jax.random.key(1), videos)

  def latents(v):
    _, state = model.apply(variables, v, method=VideoVQVAE.encode,
                           capture_intermediates=lambda m, _: m.name == 'pre_quantize')
    return state['intermediates']['pre_quantize']['__call__'][0]
  changed = latents(videos.at[:, 3].set(0.0)) - latents(videos)
  assert float(jnp.abs(changed[:, 1]).max()) > 0  # Frame 3's own latent step (frames 2, 3).
  assert (float(jnp.abs(changed[:, -1]).max()) > 0) == (reference_frame is not None)


def test_bad_video_shapes_are_named():
  model = small((2, 2, 2))
  with pytest.raises(ValueError, match=r'\[B, T, H, W, 3\]'):
    model.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3)))
  with pytest.raises(ValueError, match='T=5 is not divisible'):
    model.init(jax.random.key(0), jnp.zeros((1, 5, 16, 16, 3)))


def test_position_embeddings_are_a_flag():
  videos = jnp.zeros((1, 4, 8, 8, 3))

  def count(model):
    params = jax.eval_shape(model.init, jax.random.key(0), videos)['params']
    return sum(x.size for x in jax.tree.leaves(params))
  # One table per axis per attention block (encoder and decoder), at the latent grid 2x4x4.
  assert count(small((2, 2, 2))) - count(small((2, 2, 2), position_embeddings=False)) == (
      2 * (2 + 4 + 4) * 16)


def test_bair_parameter_count():
  """The paper's BAIR sizes (hidden 240, residual units 128, 4 layers, 1024 x 256 codes,
  (2,2,2)). By hand: encoder 46,320 (k4 conv) + 1,555,440 (k3 conv) + 4 x 1,553,296 (residual
  blocks: BN 480, k3 conv 829,440, BN 256, k1 conv 30,720, BN 480, three axial attentions
  3 x 230,640) + 480 (BN) = 7,815,424; decoder 4 x 1,553,296 + 480 + 46,083 (k4 transposed
  conv) = 6,259,747; 1x1x1 convs 61,696 + 61,680. Position embeddings add
  (8 + 32 + 32) x 240 per block, 8 blocks."""
  videos = jnp.zeros((1, 16, 64, 64, 3))

  def count(position_embeddings):
    model = VideoVQVAE(240, 128, 4, 1024, 256, (2, 2, 2), position_embeddings=position_embeddings)
    return sum(x.size for x in jax.tree.leaves(
        jax.eval_shape(model.init, jax.random.key(0), videos)['params']))
  assert count(False) == 14_198_547
  assert count(True) == 14_198_547 + 8 * 72 * 240 == 14_336_787
