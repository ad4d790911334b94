"""STEM: the bidirectional-LSTM text encoder of DAMSM (AttnGAN's RNN_ENCODER).

Word features are the per-step [forward ; backward] outputs, exactly zero at
padded steps; the sentence feature is [forward state at the last real word ;
backward state at the first word]. Sequence lengths are handled per caption,
so nothing after a caption's length can influence any output (the JAX form of
PyTorch's packed sequences).
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
    return words, sentence
