"""Fakes 8 CPU devices before JAX starts, so data- and model-parallel code runs in every test."""
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags.


import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import pytest  # noqa: E402

from lm import model as model_lib  # noqa: E402
from lm import tokenizers  # noqa: E402

ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789 .,:'


def random_model(architecture='encoder_decoder', position='relative', max_len=128, seed=0):
  """(tokenizer, model, params): a tiny randomly initialised model over a char vocabulary of ALPHABET. Untied:
  with tied embeddings the untrained model predicts its input token (the start token 0) again and again, the
  same for every input."""
  tokenizer = tokenizers.make_tokenizer('char', [ALPHABET])
  config = model_lib.ModelConfig(vocab_size=tokenizer.vocab_size, max_len=max_len, architecture=architecture,
                                 num_layers=2, d_model=32, num_heads=4, position=position, tie_embeddings=False)
  model = model_lib.build_model(config)
  params = model_lib.init_variables(model, jax.random.PRNGKey(seed), target_len=8, input_len=8)['params']
  return tokenizer, model, nn.meta.unbox(params)


@pytest.fixture(scope='session')
def seq2seq():
  """A random encoder-decoder (random_model()), shared by the generation and evaluation tests."""
  return random_model()
