import jax.numpy as jnp
import pytest

from experiments import base
from lm import optim


def train_config(**overrides):
  t = base.get_config().train
  t.update({'num_steps': 1000, 'warmup_steps': 100, 'learning_rate': 1e-3, 'min_lr_ratio': 0.1,
            'decay_fraction': 0.2, **overrides})
  return t


@pytest.mark.parametrize('schedule, final', [('cosine', 1e-4), ('constant', 1e-3), ('wsd', 1e-4)])
def test_schedule_values(schedule, final):
  lr = optim.make_schedule(train_config(schedule=schedule))
  assert float(lr(0)) == 0.0
  assert float(lr(50)) == pytest.approx(5e-4)
  assert float(lr(100)) == pytest.approx(1e-3)
  assert float(lr(1000)) == pytest.approx(final, rel=1e-4)


def test_cosine_halfway_and_wsd_plateau():
  cosine = optim.make_schedule(train_config(schedule='cosine'))
  assert float(cosine(550)) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4), rel=1e-4)
  wsd = optim.make_schedule(train_config(schedule='wsd'))
  assert float(wsd(800)) == pytest.approx(1e-3)  # Stable until the last 20% of steps,
  assert float(wsd(900)) == pytest.approx(0.5 * (1e-3 + 1e-4), rel=1e-4)  # then a linear decay.


def test_weight_decay_mask_skips_norms_biases_and_embeddings():
  params = {'embedding': jnp.ones((5, 4)), 'position_embedding': jnp.ones((8, 4)),
            'block_0': {'LayerNorm_0': {'scale': jnp.ones(4), 'bias': jnp.ones(4)},
                        'mlp': {'wi': {'kernel': jnp.ones((4, 8)), 'bias': jnp.ones(8)}}},
            'unembed': {'kernel': jnp.ones((4, 5))}}
  mask = optim.decay_mask(params)
  assert mask['block_0']['mlp']['wi']['kernel'] and mask['unembed']['kernel']
  assert not mask['embedding'] and not mask['position_embedding']
  assert not any([mask['block_0']['LayerNorm_0']['scale'], mask['block_0']['LayerNorm_0']['bias'],
                  mask['block_0']['mlp']['wi']['bias']])


def test_decay_applies_only_to_masked_params():
  t = train_config(weight_decay=0.5, learning_rate=0.1, warmup_steps=0, grad_clip=0.0)
  tx = optim.make_optimizer(t)
  params = {'embedding': jnp.ones((2, 2)), 'dense': {'kernel': jnp.ones((2, 2))}}
  zeros = {'embedding': jnp.zeros((2, 2)), 'dense': {'kernel': jnp.zeros((2, 2))}}
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert float(updates['embedding'][0, 0]) == 0.0
  assert float(updates['dense']['kernel'][0, 0]) == pytest.approx(-0.1 * 0.5)


def test_unknown_schedule_is_an_error():
  with pytest.raises(ValueError, match="train.schedule='linear'"):
    optim.make_schedule(train_config(schedule='linear'))
