"""STEM: the bidirectional-LSTM text encoder of DAMSM (AttnGAN's RNN_ENCODER).

Word features are the per-step [forward ; backward] outputs, exactly zero at
padded steps; the sentence feature is [forward state at the last real word ;
backward state at the first word] (`sentence_code="states"`, the official
one), or with `"states_mean"` (a deviation) the mean of that and of the
caption's word features. Sequence lengths are handled per caption, so nothing
after a caption's length can influence any output (the JAX form of PyTorch's
packed sequences).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mirrorgan_jax.models.layers import uniform_init


def padding_mask(lengths: jax.Array, max_len: int) -> jax.Array:
  """(B, T) boolean mask, True at padded steps (t >= length)."""
  return jnp.arange(max_len)[None, :] >= lengths[:, None]


def lstm_cell(hidden: int, name: str | None = None) -> nn.LSTMCell:
  # PyTorch's default LSTM init, U(-1/sqrt(h), 1/sqrt(h)), for kernels and bias
  # (PyTorch keeps two bias vectors b_ih + b_hh; Flax has their sum).
  init = uniform_init(1.0 / hidden**0.5)
  return nn.LSTMCell(hidden, kernel_init=init, recurrent_kernel_init=init,
                     bias_init=init, name=name)


class TextEncoder(nn.Module):
  """tokens (B, T), lengths (B,) -> words (B, T, nef), sentence (B, nef)."""
  vocab_size: int
  embedding_dim: int = 300
  hidden_dim: int = 256  # nef: both directions together
  dropout: float = 0.5
  # "states": the official sentence feature. "states_mean": its mean with the
  # words' mean: the states keep word order, the mean gives each word a share
  # of its own (the shapes default; the measurements: docs/shapes_default_job.md).
  sentence_code: str = "states"

  @nn.compact
  def __call__(self, tokens, lengths, deterministic: bool = True):
    emb = nn.Embed(self.vocab_size, self.embedding_dim,
                   embedding_init=uniform_init(0.1), name="embedding")(tokens)
    emb = nn.Dropout(self.dropout)(emb, deterministic=deterministic)
    half = self.hidden_dim // 2
    fwd = nn.RNN(lstm_cell(half, name="lstm_fwd"), return_carry=True)
    bwd = nn.RNN(lstm_cell(half, name="lstm_bwd"), return_carry=True,
                 reverse=True, keep_order=True)
    (_, h_fwd), out_fwd = fwd(emb, seq_lengths=lengths)
    (_, h_bwd), out_bwd = bwd(emb, seq_lengths=lengths)
    valid = ~padding_mask(lengths, tokens.shape[1])
    words = jnp.concatenate([out_fwd, out_bwd], axis=-1) * valid[..., None]
    sentence = jnp.concatenate([h_fwd, h_bwd], axis=-1)
    if self.sentence_code == "states_mean":
      mean = words.sum(axis=1) / jnp.maximum(lengths, 1)[:, None].astype(words.dtype)
      sentence = 0.5 * (sentence + mean)
    elif self.sentence_code != "states":  # config_check names the field for users
      raise ValueError(f"sentence_code {self.sentence_code!r}: use 'states' or 'states_mean'")
    return words, sentence
