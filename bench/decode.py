"""Decoding speed: KV-cache greedy decoding against recomputing the full sequence, and T5-small beam search.

Run: ./run.sh bench decode [--new_tokens=256] [--rounds=3] [--skip_beam]
     ./run.sh bench decode --hf_compare [--dtype=auto] [--hf_rounds=3]   (ours against transformers: hf_compare.py)

1. Greedy, decoder-only (the default Shakespeare shape: 4 layers, width 256, 4 heads, vocab 65, bf16
   matmuls; batch --batch): `decode.temperature_sample` at temperature 0 generates --new_tokens tokens after
   a one-token prompt, once through the model's KV cache (`model.make_logits_fn`) and once through a
   `logits_fn` that keeps only the tokens and reruns the whole fixed-length sequence every step (what a model
   without a cache must do; causal masking makes its logits the same). Same sampler, same jit, timed in turns,
   best of --rounds each; the two outputs must agree.
2. Beam search on a T5-small-shaped encoder-decoder (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab
   32128, relative positions, gated GELU; random weights): 4 beams, batch 8, input 512 tokens, 50 new
   tokens, encoder included; reports generated tokens/s (batch * 50 / seconds) after one compile-and-warm run.
   The EOS id is one no token can take, so every beam runs the full 50 steps (random weights would otherwise
   stop at an arbitrary point).
"""
import functools
import time

from absl import app
from absl import flags
import hf_compare  # bench/, this script's folder.
import jax
import jax.numpy as jnp
import numpy as np

from lm import decode
from lm import model as model_lib

_NEW = flags.DEFINE_integer('new_tokens', 256, 'Greedy: tokens generated per row.')
_BATCH = flags.DEFINE_integer('batch', 1, 'Greedy: rows decoded together.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Timed runs per method; the best counts.')
_SKIP_BEAM = flags.DEFINE_bool('skip_beam', False, 'Only the greedy comparison.')
_BEAM_ROUNDS = flags.DEFINE_integer('beam_rounds', 2, 'Timed beam-search runs; the best counts.')
_HF_COMPARE = flags.DEFINE_bool('hf_compare', False, "Instead: ours against transformers' generate on the same "
                                'GPT-2-small and T5-small weights, in turns (bench/hf_compare.py).')
_DTYPE = flags.DEFINE_string('dtype', 'auto', "--hf_compare: our side's model.dtype (transformers': float32).")
_HF_ROUNDS = flags.DEFINE_integer('hf_rounds', 3, '--hf_compare: timed runs of each side; the median counts.')


def recompute_logits_fn(model, params):
  """A cache-free `logits_fn`: its 'cache' is the token buffer [N, L]; each step writes one token and runs the
  full L-token sequence, reading the logits at `index`."""
  def logits_fn(tokens, index, cache):
    buffer = jax.lax.dynamic_update_slice(cache['tokens'], tokens[:, None], (0, index))
    logits = model.apply({'params': params}, buffer)
    return jax.lax.dynamic_index_in_dim(logits, index, axis=1, keepdims=False), {'tokens': buffer}
  return logits_fn


def best_of(fn, rounds):
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def greedy_comparison(new_tokens, batch, rounds):
  config = model_lib.ModelConfig(vocab_size=65, max_len=new_tokens + 1, num_layers=4, d_model=256, num_heads=4)
  model = model_lib.build_model(config)
  length = new_tokens + 1
  params = jax.jit(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, length), jnp.int32))['params'])()
  prompt = jnp.ones((batch, 1), jnp.int32)
  lengths = jnp.ones((batch,), jnp.int32)
  sample = functools.partial(decode.temperature_sample, prompt=prompt, prompt_lengths=lengths,
                             num_new_tokens=new_tokens, rng=jax.random.PRNGKey(0), temperature=0.0)
  cached = jax.jit(lambda p: sample(model.make_logits_fn(p), model.init_decode_cache(p, batch, length)))
  recompute = jax.jit(lambda p: sample(recompute_logits_fn(model, p),
                                       {'tokens': jnp.zeros((batch, length), jnp.int32)}))
  out_cached, out_recompute = cached(params), recompute(params)  # Compile both.
  same = bool(jnp.all(out_cached[0] == out_recompute[0]))
  best = {'kv cache': float('inf'), 'recompute': float('inf')}
  for _ in range(rounds):  # In turns, so a noisy spell hits both.
    best['kv cache'] = min(best['kv cache'], best_of(lambda: cached(params), 1))
    best['recompute'] = min(best['recompute'], best_of(lambda: recompute(params), 1))
  print(f'greedy decoding, decoder-only 4L x 256 (bf16), batch {batch}, {new_tokens} new tokens; '
        f'outputs identical: {same}')
  for name, seconds in best.items():
    print(f'  {name:10} {seconds * 1e3:9.1f} ms  {batch * new_tokens / seconds:10,.0f} tokens/s')
  print(f'  speedup of the KV cache: {best["recompute"] / best["kv cache"]:.1f}x')
  return best['recompute'] / best['kv cache'], same


def beam_search_t5_small(rounds):
  config = model_lib.ModelConfig(
      vocab_size=32128, max_len=512, architecture='encoder_decoder', num_layers=6, num_encoder_layers=6,
      d_model=512, num_heads=8, d_ff=2048, position='relative', norm='rmsnorm', use_bias=False, mlp='gated_gelu',
      scale_tied_logits=True, embed_init_std=1.0)
  model = model_lib.build_model(config)
  batch, input_len, beams, new_tokens = 8, 512, 4, 50
  params = jax.jit(lambda: model.init_variables(jax.random.PRNGKey(0), target_len=8, input_len=input_len)['params'])()
  params = jax.tree.map(lambda x: x.value if hasattr(x, 'value') else x, params,
                        is_leaf=lambda x: hasattr(x, 'value'))
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(2, config.vocab_size, (batch, input_len)), jnp.int32)
  segment_ids = jnp.ones_like(inputs)

  @jax.jit
  def run(params, inputs):
    cache, encoded = model.encode_for_decoding(params, inputs, segment_ids, new_tokens + 1)
    logits_fn = model.make_logits_fn(params, decode.expand_beams(encoded, beams))
    return decode.beam_search(logits_fn, cache, jnp.zeros((batch,), jnp.int32),
                              num_beams=beams, max_new_tokens=new_tokens, eos_id=config.vocab_size, alpha=0.6)

  start = time.perf_counter()
  jax.block_until_ready(run(params, inputs))
  compile_s = time.perf_counter() - start
  seconds = best_of(lambda: run(params, inputs), rounds)
  print(f'beam search, T5-small shape (6+6 layers, d 512, 8 heads, d_ff 2048, vocab 32128, bf16), batch {batch}, '
        f'{beams} beams, input {input_len}, {new_tokens} new tokens, encoder included:')
  print(f'  {seconds:.2f} s per batch ({compile_s:.0f} s compile + first run), '
        f'{batch * new_tokens / seconds:,.0f} generated tokens/s')


def main(argv):
  del argv
  if _HF_COMPARE.value:
    hf_compare.main(_DTYPE.value, _HF_ROUNDS.value)
    return
  print(f'device: {jax.devices()[0].device_kind} x1, jax {jax.__version__}')
  greedy_comparison(_NEW.value, _BATCH.value, _ROUNDS.value)
  if not _SKIP_BEAM.value:
    beam_search_t5_small(_BEAM_ROUNDS.value)


if __name__ == '__main__':
  app.run(main)
