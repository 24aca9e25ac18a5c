"""Our decoding against `transformers`' on the same models: `./run.sh bench decode --hf_compare`.

Random-initialised GPT-2-small (124M, vocab 50257) and T5-small (60M, t5-small's config) are built with
`transformers` (PyTorch, CPU, float32, eval mode), saved with save_pretrained and imported with lm/hf.py, so both
sides hold the same weights. Then, in turns (ours, theirs, ours, ...; the median of --hf_rounds each):

- greedy decoding with a KV cache, GPT-2-small, batch 1 and 8, a 16-token prompt, 128 new tokens: ours
  `generate.generate` (temperature 0), theirs `generate(do_sample=False)`, neither allowed to stop early;
- beam search, T5-small, 4 beams, batch 8, input 512 tokens, 50 new tokens, encoder included: ours
  `generate.generate` with the imported run's decoding (num_beams 4), theirs `generate(num_beams=4)`; EOS is
  forbidden on both sides (HF's min_new_tokens, our unreachable end id) so every beam runs the 50 steps.

Each row prints both times and theirs / ours (> 1: ours is faster). Ours runs in --dtype (default 'auto', which
lm/hardware.py resolves: bfloat16 where this CPU's bf16 matmuls are faster), theirs in float32 as transformers
runs on a CPU by default. Greedy batch 1 reads every weight once per token, so its floor is the weight bytes
per token over the memory bandwidth measured here (a large array sum); that row also prints the floor and the
share of it each side reaches.
"""
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from lm import generate
from lm import hardware
from lm import hf


def memory_bandwidth() -> float:
  """Bytes per second of a sum over a 512 MiB float32 array (best of 5): what a weight-streaming step can get."""
  data = jnp.ones((128 * 1024 * 1024,), jnp.float32)
  total = jax.jit(jnp.sum)
  total(data).block_until_ready()
  best = float('inf')
  for _ in range(5):
    start = time.perf_counter()
    total(data).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return data.nbytes / best


def _import(torch_model, directory, dtype):
  torch_model.eval()
  torch_model.save_pretrained(directory)
  _, _, model, params = hf.load_model(directory)
  return model.__class__(model.config.replace(dtype=dtype)), params


def _timed_in_turns(ours, theirs, rounds):
  ours(), theirs()  # Compile and warm up.
  times = {'ours': [], 'theirs': []}
  for _ in range(rounds):
    for name, fn in (('ours', ours), ('theirs', theirs)):
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return statistics.median(times['ours']), statistics.median(times['theirs'])


def greedy_rows(torch, transformers, dtype, rounds, directory):
  torch.manual_seed(0)
  torch_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
  model, params = _import(torch_model, directory, dtype)
  weight_bytes = 4 * sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  bandwidth = memory_bandwidth()
  rows = []
  for batch in (1, 8):
    prompt = np.random.default_rng(0).integers(0, 50257, (batch, 16)).astype(np.int32)
    settings = generate.Decoding(num_beams=1, max_decode_len=128, temperature=0.0)
    lengths = jnp.full((batch,), 16, jnp.int32)

    def ours(prompt=prompt, lengths=lengths, settings=settings):
      return jax.block_until_ready(generate.generate(params, jnp.asarray(prompt), lengths, jax.random.PRNGKey(0),
                                                     model=model, s=settings, eos_id=-1))

    def theirs(prompt=prompt):
      with torch.no_grad():
        return torch_model.generate(torch.tensor(prompt, dtype=torch.long), max_new_tokens=128, min_new_tokens=128,
                                    do_sample=False, eos_token_id=None, pad_token_id=0)

    ours_s, theirs_s = _timed_in_turns(ours, theirs, rounds)
    row = f'greedy GPT-2-small, batch {batch}, 16 + 128 tokens  ours {ours_s:6.2f} s  theirs {theirs_s:6.2f} s  ' \
          f'theirs/ours {theirs_s / ours_s:5.2f}x'
    if batch == 1:  # Bound by reading the weights: each new token reads all of them (float32 here: 4 bytes each).
      floor = 128 * weight_bytes / bandwidth
      row += (f'\n  memory floor {floor:.2f} s ({weight_bytes / 1e6:.0f} MB of float32 weights per token at '
              f'{bandwidth / 1e9:.1f} GB/s): ours at {floor / ours_s:.0%} of it, theirs at {floor / theirs_s:.0%}')
    rows.append(row)
  return rows


def beam_row(torch, transformers, dtype, rounds, directory):
  torch.manual_seed(0)
  config = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
                                 feed_forward_proj='relu', dropout_rate=0.0, decoder_start_token_id=0,
                                 pad_token_id=0, eos_token_id=1)  # t5-small's config.
  torch_model = transformers.T5ForConditionalGeneration(config)
  model, params = _import(torch_model, directory, dtype)
  batch, input_len, beams, new_tokens = 8, 512, 4, 50
  inputs = np.random.default_rng(0).integers(2, 32100, (batch, input_len)).astype(np.int32)
  settings = generate.Decoding(num_beams=beams, max_decode_len=new_tokens, alpha=1.0, beam_convention='hf')
  lengths = jnp.full((batch,), input_len, jnp.int32)

  def ours():
    return jax.block_until_ready(generate.generate(params, jnp.asarray(inputs), lengths, jax.random.PRNGKey(0),
                                                   model=model, s=settings, eos_id=-1))

  def theirs():
    with torch.no_grad():
      return torch_model.generate(torch.tensor(inputs, dtype=torch.long), num_beams=beams, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False)

  ours_s, theirs_s = _timed_in_turns(ours, theirs, rounds)
  return [f'beam T5-small, batch {batch}, {beams} beams, input {input_len}, {new_tokens} new  ours {ours_s:6.2f} s  '
          f'theirs {theirs_s:6.2f} s  theirs/ours {theirs_s / ours_s:5.2f}x']


def main(dtype: str, rounds: int) -> None:
  import torch  # The hf extra: `./run.sh bench decode --hf_compare` installs it.
  import transformers
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  resolved = hardware.resolve_dtype(dtype)
  print(f'CPU: {hardware.device_name()}, {len(os.sched_getaffinity(0))} CPUs; jax {jax.__version__}, torch '
        f'{torch.__version__}, transformers {transformers.__version__}; ours in {resolved} (--dtype={dtype}), '
        f'theirs in float32; median of {rounds} runs each, in turns', flush=True)
  with tempfile.TemporaryDirectory() as directory:
    for row in greedy_rows(torch, transformers, resolved, rounds, os.path.join(directory, 'gpt2')):
      print(row, flush=True)
    for row in beam_row(torch, transformers, resolved, rounds, os.path.join(directory, 't5')):
      print(row, flush=True)
