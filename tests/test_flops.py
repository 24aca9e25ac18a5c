import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import base
from lm import flops
from lm import model as model_lib
from lm import optim
from lm import step as step_lib

OPTIONS = [dict(), dict(mlp='swiglu', num_kv_heads=2), dict(head_dim=8),
           dict(architecture='encoder_decoder', num_encoder_layers=3),
           dict(architecture='encoder_decoder', mlp='gated_gelu', num_kv_heads=2, position='relative', use_bias=False),
           dict(architecture='encoder_decoder', pointer_generator=True)]


def param_shapes(config):
  model = model_lib.build_model(config)
  return jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), target_len=16, input_len=16))['params']


@pytest.mark.parametrize('options', OPTIONS)
def test_matmul_params_are_the_model_kernels(options):
  config = model_lib.ModelConfig(vocab_size=37, max_len=16, num_layers=2, d_model=32, num_heads=4,
                                 tie_embeddings=False, **options)
  kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(nn.meta.unbox(param_shapes(config)))
             if path[-1].key == 'kernel']
  assert flops.matmul_params(config) == sum(int(np.prod(k.shape)) for k in kernels)


@pytest.mark.parametrize('options', OPTIONS + [
    dict(tie_embeddings=True), dict(position='rope', norm='rmsnorm', use_bias=False), dict(position='relative'),
    dict(position='sinusoidal', mlp='relu'), dict(architecture='encoder_decoder', position='learned', mlp='relu'),
    dict(architecture='encoder_decoder', pointer_generator=True, use_bias=False, tie_embeddings=True)])
def test_param_counts_from_the_config_are_the_param_trees(options):
  config = model_lib.ModelConfig(**{'vocab_size': 37, 'max_len': 16, 'num_layers': 2, 'd_model': 32,
                                    'num_heads': 4, 'tie_embeddings': False, **options})
  params = param_shapes(config)
  counted = flops.count_param_tree(params)
  assert flops.param_counts(config) == counted
  assert counted.total == flops.count_params(nn.meta.unbox(params))


def test_kaplan_leaves_out_embeddings_and_chinchilla_counts_them():
  """Hand count of a 1-layer tied GPT: width 8, MLP 32, vocab 50, 16 learned positions."""
  config = model_lib.ModelConfig(vocab_size=50, max_len=16, num_layers=1, d_model=8, num_heads=2)
  block = 4 * (8 * 8 + 8) + (8 * 32 + 32) + (32 * 8 + 8) + 2 * 2 * 8  # q k v o, wi, wo (with biases), 2 LayerNorms.
  counts = flops.param_counts(config)
  assert counts.non_embedding == block + 2 * 8  # And the final LayerNorm.
  assert (counts.embedding, counts.position, counts.unembedding) == (50 * 8, 16 * 8, 0)
  assert counts.total == counts.non_embedding + 50 * 8 + 16 * 8
  untied = flops.param_counts(config.replace(tie_embeddings=False, position='rope'))
  assert (untied.non_embedding, untied.position, untied.unembedding) == (counts.non_embedding, 0, 8 * 50)


def test_flops_per_token_is_palm_formula():
  config = model_lib.ModelConfig(vocab_size=65, max_len=64, num_layers=4, d_model=128, num_heads=4)
  n = 4 * (4 * 128 * 128 + 2 * 128 * 512) + 128 * 65
  assert flops.flops_per_token(config, 64) == 6 * n + 12 * 4 * 4 * 32 * 64
  # The causal discount halves QK^T and PV; inference is the forward pass, a third of training.
  assert flops.flops_per_token(config, 64, causal_discount=True) == 6 * n + 6 * 4 * 4 * 32 * 64
  assert flops.flops_per_token(config, 64, training=False) == 2 * n + 4 * 4 * 4 * 32 * 64
  assert flops.flops_per_token(config, 64, training=False, causal_discount=True) == 2 * n + 2 * 4 * 4 * 32 * 64


def test_encoder_decoder_flops_count_each_weight_per_token_it_touches():
  """Hand count for a 1+1-layer encoder-decoder, input 10, target 4 tokens."""
  config = model_lib.ModelConfig(vocab_size=50, max_len=16, architecture='encoder_decoder', num_layers=1,
                                 num_encoder_layers=1, d_model=8, num_heads=2, d_ff=16)
  attn, mlp = 4 * 8 * 8, 2 * 8 * 16  # q, k, v, o kernels; wi, wo.
  encoder = 10 * (6 * (attn + mlp) + 12 * 8 * 10)  # Weights per input token, QK^T/AV over 10 keys.
  decoder = 4 * (6 * (attn + attn // 2 + mlp + 8 * 50) + 12 * 8 * (4 + 10))  # Self, cross q/o, MLP, output.
  cross_kv = 10 * 6 * (attn // 2)  # Cross-attention keys/values of each input token.
  assert flops.flops_per_row(config, target_len=4, input_len=10) == encoder + decoder + cross_kv
  # Only the decoder's self-attention is causal: the discount halves its 4 x 4 pairs, not the encoder's or cross.
  assert flops.flops_per_row(config, target_len=4, input_len=10, causal_discount=True) == (
      encoder + decoder + cross_kv - 6 * 8 * 4 * 4)
  assert flops.flops_per_token(config, 4, input_len=10) == (encoder + decoder + cross_kv) / 14  # Per row position.
  # A pointer generator: its key per input token; query, gate and one width-8 head over 10 inputs per target.
  copying = config.replace(pointer_generator=True)
  assert flops.flops_per_row(copying, target_len=4, input_len=10) == (
      encoder + decoder + cross_kv + 10 * 6 * 8 * 8 + 4 * (6 * (8 * 8 + 2 * 8) + 12 * 8 * 10))
  decoder_only = config.replace(architecture='decoder_only')
  assert flops.flops_per_row(decoder_only, target_len=4) == 4 * flops.flops_per_token(decoder_only, 4)


def test_peak_flops_table_reads_jax_device_kinds():
  assert flops.table_peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.5e12
  assert flops.table_peak_flops('NVIDIA H100 80GB HBM3', 'float32') == 494.5e12  # TF32.
  assert flops.table_peak_flops('NVIDIA H100 PCIe', 'bfloat16') == 756.5e12  # The longest name that matches.
  assert flops.table_peak_flops('NVIDIA H200', 'bfloat16') == 989.5e12
  assert flops.table_peak_flops('NVIDIA A100-SXM4-80GB', 'bfloat16') == 312e12
  assert flops.table_peak_flops('TPU v5 lite', 'bfloat16') == 197e12
  assert flops.table_peak_flops('TPU v5', 'bfloat16') == 459e12
  assert flops.table_peak_flops('TPU v4', 'float32') == 275e12
  assert math.isnan(flops.table_peak_flops('Quadro 4000', 'bfloat16'))
  assert all(set(dtypes) == set(model_lib.DTYPES) for dtypes in flops.PEAK_FLOPS.values())


def test_the_size_table_has_every_size_with_its_counts():
  table = flops.size_table(base.get_config().model, vocab_size=86, target_len=128)
  rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
  assert list(rows) == list(model_lib.SIZES)
  assert rows['10m'][1:4] == ['6', '384', '6'] and rows['10m'][6:8] == ['10.6M', '10.7M']


# ----------------------------------------------------------------------------------------------------------
# Against XLA's count of the compiled train step.

# Three shapes of each family (float32, remat off, one microbatch): 4 rows of 64 decoder tokens (and 48 encoder
# tokens), widths 64-128 so each compiles in a second or a few.
XLA_SHAPES = {
    'gpt': dict(num_layers=2, d_model=64, num_heads=4),
    'llama': dict(num_layers=2, d_model=128, num_heads=4, mlp='swiglu', num_kv_heads=2, position='rope',
                  norm='rmsnorm', use_bias=False, tie_embeddings=False),
    'gpt_v256': dict(num_layers=3, d_model=96, num_heads=3, vocab_size=256),
    't5': dict(architecture='encoder_decoder', num_layers=2, d_model=64, num_heads=4, position='relative',
               norm='rmsnorm', use_bias=False, mlp='gated_gelu', tie_embeddings=False),
    'enc3_dec2': dict(architecture='encoder_decoder', num_layers=2, num_encoder_layers=3, d_model=64, num_heads=4,
                      num_kv_heads=2, mlp='relu'),
    'pointer': dict(architecture='encoder_decoder', num_layers=2, d_model=64, num_heads=4, pointer_generator=True),
}
ROWS, TARGET_LEN, INPUT_LEN = 4, 64, 48


def compiled_train_step(config: model_lib.ModelConfig, input_len: int):
  model = model_lib.build_model(config)
  tx = optim.make_optimizer(base.get_config().train)  # AdamW with clipping, as training runs it.
  state = jax.eval_shape(lambda: step_lib.init_state(model, tx, jax.random.PRNGKey(0), TARGET_LEN,
                                                     input_len=input_len))
  ones = lambda length, dtype=jnp.int32: jax.ShapeDtypeStruct((ROWS, length), dtype)
  batch = {f'decoder_{name}': ones(TARGET_LEN) for name in ('input_tokens', 'target_tokens', 'segment_ids',
                                                             'positions')}
  batch['decoder_loss_weights'] = ones(TARGET_LEN, jnp.float32)
  if input_len:
    batch.update({f'encoder_{name}': ones(input_len) for name in ('input_tokens', 'segment_ids', 'positions')})
  step = functools.partial(step_lib.train_step, model=model, tx=tx,
                           token_bytes=jnp.ones(config.vocab_size, jnp.int32))
  return jax.jit(step).lower(state, batch).compile()


def hlo_dot_flops(hlo_text: str) -> int:
  """2 x output elements x contracted size, summed over every dot of an HLO module's text (fused ones included)."""
  shapes, total = {}, 0
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%([\w.-]+) = \w+\[([\d,]*)\]\S* ([\w-]+)\(([^)]*)\)(.*)', line)
    if not m:
      continue
    name, dims, op, operands, attributes = m.groups()
    shapes[name] = [int(d) for d in dims.split(',') if d]
    if op == 'dot':
      lhs = shapes[re.findall(r'%([\w.-]+)', operands)[0]]
      contracted = re.search(r'lhs_contracting_dims=\{([\d,]*)\}', attributes).group(1)
      total += 2 * math.prod(shapes[name]) * math.prod(lhs[int(i)] for i in contracted.split(',') if i)
  return total


@pytest.mark.parametrize('name', XLA_SHAPES)
def test_the_flops_count_is_what_xla_counts_in_the_compiled_train_step(name, capsys):
  """Our undiscounted count against XLA:CPU's `cost_analysis()` of the whole compiled step (forward, backward,
  clipping, AdamW).

  The dots of the compiled step (the custom-VJP backward passes of lm/kernels.py included: XLA sees them as plain
  dots, some inside fusions, which its cost analysis counts by their fused instructions; the row-major transposes
  are copies, 0 FLOPs) add up to our count exactly, but for one: XLA rewrites a dot that contracts a dimension of
  size 1 as a broadcast multiply, which it counts as elementwise. That is the pointer generator's gate's input
  gradient, [B*L, 1] x [1, 2D]. The rest of XLA's count is elementwise and reductions, 1 FLOP per element, which
  our model-FLOPs convention leaves out; for 'gpt' (measured by op name in the HLO) it is 5.6% of our count: tanh
  GELU 2.0%, AdamW and clipping 1.2%, attention's softmax and mask 1.1%, LayerNorms 1.1%, the loss 0.04%; XLA
  counts exp, tanh and rsqrt apart, as transcendentals. It shrinks as width grows (per weight, the optimizer's few
  FLOPs against 6 per token; per score, softmax's against 12 x head width).
  """
  config = model_lib.ModelConfig(**{'vocab_size': 64, 'max_len': TARGET_LEN, 'dtype': 'float32',
                                    **XLA_SHAPES[name]})
  input_len = INPUT_LEN if config.architecture == 'encoder_decoder' else 0
  compiled = compiled_train_step(config, input_len)
  analysis = compiled.cost_analysis()
  xla = (analysis[0] if isinstance(analysis, list) else analysis)['flops']
  ours = ROWS * flops.flops_per_row(config, target_len=TARGET_LEN, input_len=input_len)
  causal = ROWS * flops.flops_per_row(config, target_len=TARGET_LEN, input_len=input_len, causal_discount=True)
  with capsys.disabled():
    print(f'\n{name}: XLA {xla:.4g}, ours {ours:.4g} (XLA / ours {xla / ours:.4f}), causally discounted '
          f'{causal:.4g} ({causal / xla:.3f} of XLA)')
  outer_product = 2 * ROWS * TARGET_LEN * 2 * config.d_model if config.pointer_generator else 0
  assert hlo_dot_flops(compiled.as_text()) == ours - outer_product
  assert ours < xla < 1.1 * ours
  assert causal < ours
