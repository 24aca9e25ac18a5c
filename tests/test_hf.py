"""Hugging Face import and export (lm/hf.py) against `transformers` itself: tiny random models built in PyTorch
from configs written here, saved with save_pretrained, imported, and compared (logits, generation, round trips).
Nothing is downloaded. The `hf` extra (torch CPU, transformers, safetensors, tokenizers) must be installed:
`./run.sh test` installs it; without it these tests skip, which fails under CI=true."""
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_hf_tokenizers  # Its tiny tokenizers, saved as transformers saves them.

from lm import errors
from lm import evaluate
from lm import generate
from lm import hf
from lm import rundir
from lm import tokenizers
from lm import train

try:  # The hf extra. Without it every test skips in the fixture below, which fails under CI=true (conftest.py):
  import torch  # a skip at collection (importorskip) would not.
  import transformers
except ImportError as e:
  torch = transformers = None
  MISSING = f'needs torch and transformers, the hf extra (pip install -e .[hf]): {e}'

VOCAB = 96


@pytest.fixture(autouse=True)
def hf_extra():
  if transformers is None:
    pytest.skip(MISSING)
LLAMA_ROPES = {  # name -> rope_parameters: HF's rope types that lm/layers.py implements.
    'default': {'rope_type': 'default', 'rope_theta': 10000.0},
    'linear': {'rope_type': 'linear', 'rope_theta': 10000.0, 'factor': 4.0},
    'dynamic': {'rope_type': 'dynamic', 'rope_theta': 10000.0, 'factor': 2.0},
    'llama3': {'rope_type': 'llama3', 'rope_theta': 500000.0, 'factor': 8.0, 'low_freq_factor': 1.0,
               'high_freq_factor': 4.0, 'original_max_position_embeddings': 32},  # Keeps, blends and divides.
}


def _save(model, directory):
  torch.manual_seed(0)
  model.eval()
  model.save_pretrained(directory)
  return model


def gpt2(directory):
  torch.manual_seed(0)
  config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                   bos_token_id=1, eos_token_id=1)
  return _save(transformers.GPT2LMHeadModel(config), directory)


def llama(directory, rope='default', tied=False, vocab=VOCAB):
  torch.manual_seed(0)
  config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                                    rope_parameters=LLAMA_ROPES[rope], tie_word_embeddings=tied)
  return _save(transformers.LlamaForCausalLM(config), directory)


def t5(directory, gated=False, decoder_layers=3):
  """T5 v1.0 (ReLU, tied head scaled by d_model**-0.5), or with `gated` a T5 v1.1 / Flan-T5 as the hub has them:
  gated GELU and an lm_head of its own, unscaled (tie_word_embeddings false in config.json)."""
  torch.manual_seed(0)
  config = transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                 num_decoder_layers=decoder_layers, num_heads=2, relative_attention_num_buckets=8,
                                 relative_attention_max_distance=20,
                                 feed_forward_proj='gated-gelu' if gated else 'relu', tie_word_embeddings=not gated,
                                 dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  _save(transformers.T5ForConditionalGeneration(config), directory)
  if gated:  # transformers 5 ties every new T5's head; give it its own, as the hub's v1.1 checkpoints have.
    from safetensors.numpy import load_file
    from safetensors.numpy import save_file
    path = os.path.join(directory, 'model.safetensors')
    tensors = load_file(path)
    tensors['lm_head.weight'] = np.random.default_rng(0).normal(size=(VOCAB, 32)).astype(np.float32)
    save_file(tensors, path, metadata={'format': 'pt'})
  model = transformers.T5ForConditionalGeneration.from_pretrained(directory)
  model.eval()
  return model


def _tokens(shape, seed=0):
  return np.random.default_rng(seed).integers(2, VOCAB, shape).astype(np.int32)


def _hf_logits(model, tokens, decoder_tokens=None):
  with torch.no_grad():
    if decoder_tokens is None:
      return model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    return model(input_ids=torch.tensor(tokens, dtype=torch.long),
                 decoder_input_ids=torch.tensor(decoder_tokens, dtype=torch.long)).logits.numpy()


def _our_logits(hf_dir, tokens, decoder_tokens=None):
  _, _, model, params = hf.load_model(hf_dir)
  apply = jax.jit(lambda params, *tokens: model.apply({'params': params}, *tokens))  # Eagerly, each op compiles.
  if decoder_tokens is None:
    return np.asarray(apply(params, jnp.asarray(tokens)))
  return np.asarray(apply(params, jnp.asarray(tokens), jnp.asarray(decoder_tokens)))


def test_gpt2_logits_match_transformers(tmp_path):
  model, tokens = gpt2(tmp_path), _tokens((3, 32))
  np.testing.assert_allclose(_our_logits(tmp_path, tokens), _hf_logits(model, tokens), atol=1e-4, rtol=0)


@pytest.mark.parametrize('rope', list(LLAMA_ROPES))
def test_llama_logits_match_transformers(tmp_path, rope):
  # 24 positions: past max_position_embeddings (16), where 'dynamic' grows its base.
  model, tokens = llama(tmp_path, rope), _tokens((2, 24))
  np.testing.assert_allclose(_our_logits(tmp_path, tokens), _hf_logits(model, tokens), atol=1e-4, rtol=0)


@pytest.mark.parametrize('gated', [False, True], ids=['t5_v1_0', 't5_v1_1'])
def test_t5_logits_match_transformers(tmp_path, gated):
  # 40 input positions: offsets past relative_attention_max_distance (20), into the log-spaced buckets.
  model, tokens, decoder_tokens = t5(tmp_path, gated), _tokens((2, 40)), _tokens((2, 30), seed=1)
  decoder_tokens[:, 0] = 0  # The start token.
  np.testing.assert_allclose(_our_logits(tmp_path, tokens, decoder_tokens), _hf_logits(model, tokens, decoder_tokens),
                             atol=1e-4, rtol=0)


def _round_trip(tmp_path, make, tokens, decoder_tokens=None, **kwargs):
  """Import `make`'s model, export it again, load that with from_pretrained: same tensors, same logits."""
  source, exported = tmp_path / 'source', tmp_path / 'exported'
  original = make(source, **kwargs)
  _, _, model, params = hf.load_model(source)
  hf.save_model(model.config, params, exported)
  reloaded = type(original).from_pretrained(exported)
  reloaded.eval()
  want, got = original.state_dict(), reloaded.state_dict()
  assert sorted(want) == sorted(got)
  for name in want:
    assert torch.equal(want[name], got[name]), name
  np.testing.assert_array_equal(_hf_logits(reloaded, tokens, decoder_tokens),
                                _hf_logits(original, tokens, decoder_tokens))


def test_gpt2_round_trip_is_exact(tmp_path):
  _round_trip(tmp_path, gpt2, _tokens((2, 16)))


@pytest.mark.parametrize('rope, tied', [('default', False), ('linear', True), ('llama3', False)])
def test_llama_round_trip_is_exact(tmp_path, rope, tied):
  _round_trip(tmp_path, llama, _tokens((2, 16)), rope=rope, tied=tied)


@pytest.mark.parametrize('gated', [False, True], ids=['t5_v1_0', 't5_v1_1'])
def test_t5_round_trip_is_exact(tmp_path, gated):
  _round_trip(tmp_path, t5, _tokens((2, 16)), _tokens((2, 8), seed=1), gated=gated)


def _greedy(model_hf, hf_dir, prompt, new_tokens):
  """(ours, transformers') greedy continuations of `prompt[B, P]` by `new_tokens` tokens, KV caches on both sides."""
  _, _, model, params = hf.load_model(hf_dir)
  settings = generate.Decoding(num_beams=1, max_decode_len=new_tokens, temperature=0.0)
  lengths = np.full((prompt.shape[0],), prompt.shape[1], np.int32)
  ours = generate.generate(params, jnp.asarray(prompt), jnp.asarray(lengths), jax.random.PRNGKey(0), model=model,
                           s=settings, eos_id=-1)  # No end token: 20 tokens on both sides.
  with torch.no_grad():
    theirs = model_hf.generate(torch.tensor(prompt, dtype=torch.long), max_new_tokens=new_tokens, do_sample=False,
                               eos_token_id=None, pad_token_id=0)
  return np.asarray(ours), theirs[:, prompt.shape[1]:].numpy()


def test_gpt2_greedy_generation_matches_transformers(tmp_path):
  ours, theirs = _greedy(gpt2(tmp_path), tmp_path, _tokens((3, 5)), 20)
  np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize('rope', list(LLAMA_ROPES))
def test_llama_greedy_generation_matches_transformers(tmp_path, rope):
  # 5 + 20 positions: past max_position_embeddings (16), where 'dynamic' grows its base step by step.
  ours, theirs = _greedy(llama(tmp_path, rope), tmp_path, _tokens((3, 5)), 20)
  np.testing.assert_array_equal(ours, theirs)


def _edit_config(directory, **changes):
  path = os.path.join(directory, 'config.json')
  with open(path) as f:
    config = json.load(f)
  config.update(changes)
  with open(path, 'w') as f:
    json.dump(config, f)


def _edit_tensors(directory, edit):
  from safetensors.numpy import load_file
  from safetensors.numpy import save_file
  path = os.path.join(directory, 'model.safetensors')
  tensors = load_file(path)
  edit(tensors)
  save_file(tensors, path, metadata={'format': 'pt'})


def test_pickled_weights_are_refused_unread(tmp_path):
  gpt2(tmp_path)
  os.rename(tmp_path / 'model.safetensors', tmp_path / 'pytorch_model.bin')  # Never unpickled: any bytes do.
  with pytest.raises(errors.InputError, match=r'pickles \(pytorch_model.bin\).*safetensors only'):
    hf.load_model(tmp_path)


@pytest.mark.parametrize('make, changes, named', [
    (gpt2, {'model_type': 'gpt_neox'}, "model_type 'gpt_neox'"),
    (gpt2, {'activation_function': 'gelu'}, "activation_function='gelu'"),
    (llama, {'model_type': 'mistral', 'sliding_window': 8}, 'sliding_window=8'),
    (llama, {'rope_parameters': {'rope_type': 'yarn', 'rope_theta': 1e4, 'factor': 2.0}}, "rope type='yarn'"),
    (llama, {'attention_bias': True}, 'attention_bias=True'),
    (t5, {'feed_forward_proj': 'gated-silu'}, "feed_forward_proj='gated-silu'"),
    (gpt2, {'scale_attn_by_inverse_layer_idx': True}, 'scale_attn_by_inverse_layer_idx=True'),
    # MistralConfig's default window (4096) when the key is absent, shorter than this context.
    (llama, {'model_type': 'mistral', 'max_position_embeddings': 8192}, 'sliding_window=4096'),
    (llama, {'partial_rotary_factor': 0.5}, 'partial_rotary_factor=0.5'),
    (llama, {'mlp_bias': True}, 'mlp_bias=True'),
    (llama, {'rope_parameters': {'rope_type': 'linear', 'rope_theta': 1e4}}, "without=['factor']"),
    (t5, {'dense_act_fn': 'gelu'}, "dense_act_fn='gelu'"),
    (t5, {'decoder_start_token_id': 2}, 'decoder_start_token_id=2'),
], ids=['architecture', 'activation', 'sliding_window', 'yarn', 'attention_bias', 't5_activation',
        'inverse_layer_idx', 'mistral_default_window', 'partial_rotary', 'mlp_bias', 'rope_factor', 't5_act_fn',
        't5_start'])
def test_unsupported_options_are_refused_by_name(tmp_path, make, changes, named):
  make(tmp_path)
  _edit_config(tmp_path, **changes)
  with pytest.raises(errors.InputError, match=re.escape(named)):
    hf.load_model(tmp_path)


def test_mistral_without_a_sliding_window_imports_as_llama(tmp_path):
  model = llama(tmp_path)
  _edit_config(tmp_path, model_type='mistral', sliding_window=None)
  tokens = _tokens((1, 8))
  np.testing.assert_allclose(_our_logits(tmp_path, tokens), _hf_logits(model, tokens), atol=1e-4, rtol=0)


def test_a_tensor_of_another_shape_is_refused_by_name(tmp_path):
  llama(tmp_path)
  _edit_config(tmp_path, intermediate_size=48)  # The weights stay 64 wide.
  with pytest.raises(errors.InputError, match=r'model.layers.0.mlp.gate_proj.weight has shape \(64, 32\)'):
    hf.load_model(tmp_path)


def test_missing_and_unused_tensors_are_refused_by_name(tmp_path):
  gpt2(tmp_path)
  _edit_tensors(tmp_path, lambda t: t.pop('transformer.h.1.mlp.c_fc.bias'))
  with pytest.raises(errors.InputError, match=r'tensor transformer.h.1.mlp.c_fc.bias is missing'):
    hf.load_model(tmp_path)
  gpt2(tmp_path)
  _edit_tensors(tmp_path, lambda t: t.update({'transformer.h.0.extra.weight': np.zeros(3, np.float32)}))
  with pytest.raises(errors.InputError, match=r'transformer.h.0.extra.weight.*not used'):
    hf.load_model(tmp_path)


def _until_eos(row, eos=1):
  row = list(row)
  return row[:row.index(eos) + 1] if eos in row else row


def test_t5_beam_search_matches_generate(tmp_path):
  """generate(num_beams=4, max_length=50, length_penalty=L) on inputs of several lengths (padding masked on both
  sides) gives our tokens. An end token close to the pad token, which random T5s repeat, makes the penalty
  decide: without one the search ends at once, with one it runs to max_length. (tests/test_hf_beam_search.py
  checks the finishing rules on a model whose beams end at every length.)"""
  model_hf = t5(tmp_path, decoder_layers=2)  # transformers 5.24's T5 cache has encoder-many layers.
  with torch.no_grad():
    embedding = model_hf.shared.weight
    noise = torch.randn(embedding.shape[1], generator=torch.Generator().manual_seed(0))
    embedding[1] = 0.9 * embedding[0] + 0.3 * embedding[0].std() * noise
  model_hf.save_pretrained(tmp_path)
  lengths = np.array([7, 12, 20, 3, 16, 9])
  inputs = _tokens((len(lengths), 20), seed=2)
  inputs[np.arange(20) >= lengths[:, None]] = 0
  inputs[np.arange(len(lengths)), lengths - 1] = 1  # T5 inputs end in EOS.
  _, _, model, params = hf.load_model(tmp_path)
  seen = set()
  for length_penalty in (0.0, 1.0, 2.0):
    settings = generate.Decoding(num_beams=4, max_decode_len=49, alpha=length_penalty, beam_convention='hf')
    ours = np.asarray(generate.generate(params, jnp.asarray(inputs), jnp.asarray(lengths), jax.random.PRNGKey(0),
                                        model=model, s=settings, eos_id=1))
    with torch.no_grad():
      theirs = model_hf.generate(torch.tensor(inputs, dtype=torch.long), attention_mask=torch.tensor(inputs != 0),
                                 num_beams=4, max_length=50, length_penalty=length_penalty, early_stopping=False,
                                 do_sample=False).numpy()[:, 1:]  # Less the start token.
    finished = [_until_eos(row) for row in theirs]
    assert [_until_eos(row) for row in ours] == finished, length_penalty
    seen |= {len(row) for row in finished}
  assert len(seen) > 1  # The penalty changed the outcome.


def test_gpt2_import_sample_fine_tune_export(tmp_path, lm_corpus, capsys):
  """The whole path: an HF GPT-2 with its tokenizer -> import -> sample; fine-tuning from it lowers the loss;
  export -> transformers loads model and tokenizer, with our logits and ids."""
  hf_dir = test_hf_tokenizers._gpt2_dirs(transformers, tmp_path)['gpt2_file']
  vocab = len(transformers.AutoTokenizer.from_pretrained(hf_dir))
  torch.manual_seed(0)
  transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=vocab, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=vocab - 1,
      eos_token_id=vocab - 1)).save_pretrained(hf_dir)
  imported = tmp_path / 'imported'
  assert 'imported gpt2' in hf.import_checkpoint(hf_dir, imported)
  assert json.loads((imported / rundir.IMPORTED_FILE).read_text())['model_type'] == 'gpt2'
  sample = evaluate.sample_from_workdir(str(imported), 'the quick', num_tokens=5, temperature=0.0)
  assert sample.startswith('the quick') and len(sample) > len('the quick'), sample
  with pytest.raises(errors.InputError, match='read, not trained in'):
    train.train_and_evaluate(rundir.load_config(imported), str(imported))
  with pytest.raises(errors.InputError, match='exists and is not an empty directory'):
    hf.import_checkpoint(hf_dir, imported)

  config = rundir.load_config(imported)  # `--config=lm/rundir.py:runs/imported`: the imported model as it is.
  config.data.update(name='text_files', path=str(lm_corpus), data_dir=str(tmp_path / 'tfds'), seq_len=16)
  config.train.update(num_steps=30, batch_size=8, learning_rate=3e-3, warmup_steps=0, log_every=5, eval_every=30,
                      checkpoint_every=30)
  config.decode.sample_num_tokens = 0
  config.init_from = str(imported)
  tuned = tmp_path / 'tuned'
  train.train_and_evaluate(config, str(tuned))
  assert f'params from {imported} step 0 (init_from)' in capsys.readouterr().out
  losses = [row['loss'] for row in rundir.read_metrics(str(tuned), 'train')]
  assert losses[-1] < 0.8 * losses[0], losses

  exported = tmp_path / 'exported'
  assert 'tokenizer: tokenizer.json' in hf.export_checkpoint(str(tuned), str(exported))
  with pytest.raises(errors.InputError, match='exists and is not empty'):  # Its old files would be read.
    hf.export_checkpoint(str(tuned), str(exported))
  model_hf = transformers.AutoModelForCausalLM.from_pretrained(exported)
  model_hf.eval()
  tokenizer_hf = transformers.AutoTokenizer.from_pretrained(exported)
  ours_tokenizer = tokenizers.load_tokenizer(str(tuned / rundir.TOKENIZER_DIR))
  text = 'the lazy dog jumps over some words'
  ids = ours_tokenizer.encode(text)
  assert tokenizer_hf(text, add_special_tokens=False).input_ids == ids.tolist()
  run = rundir.load_run(str(tuned))
  ours = np.asarray(run.model.apply({'params': run.params}, jnp.asarray(ids[None])))
  np.testing.assert_allclose(ours, _hf_logits(model_hf, ids[None]), atol=1e-4, rtol=0)


def test_imported_t5_summarizes_as_transformers(tmp_path):
  """`./run.sh summarize` on an imported T5 (spiece.model tokenizer): the tokens of transformers' pipeline,
  tokenizer('summarize: ' + text) -> generate(num_beams=4, max_length=50) -> decode(skip_special_tokens=True)."""
  hf_dir = test_hf_tokenizers._t5_dirs(transformers, tmp_path)['t5_spiece']
  tokenizer_hf = transformers.AutoTokenizer.from_pretrained(hf_dir)
  torch.manual_seed(0)
  model_hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=len(tokenizer_hf) + 8, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, dropout_rate=0.0,
      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
  model_hf.eval()
  model_hf.save_pretrained(hf_dir)
  workdir = tmp_path / 'run'
  hf.import_checkpoint(hf_dir, workdir)
  texts = ['The quick brown fox jumps over the lazy dog.', 'some more words of ordinary English prose']
  ours = evaluate.predict_from_workdir(str(workdir), texts, task='summarize')
  inputs = tokenizer_hf(['summarize: ' + text for text in texts], return_tensors='pt', padding=True, truncation=True,
                        max_length=512)
  with torch.no_grad():
    output = model_hf.generate(**inputs, num_beams=4, max_length=50)
  assert ours == tokenizer_hf.batch_decode(output, skip_special_tokens=True)
  assert all(len(summary) > 10 for summary in ours), ours  # Text, not an empty string on both sides.
  # `./run.sh eval`: ROUGE over the offline python_docstrings split, with T5's prefix, as the import sets it up.
  config = rundir.load_config(workdir)
  assert (config.data.name, config.data.prefix, config.eval.metrics) == ('python_docstrings', 'summarize: ', ('rouge',))
  config.data.data_dir = str(tmp_path / 'tfds')
  config.eval.update(num_examples=4, batch_size=4)
  scores = evaluate.evaluate_run(str(workdir), config)
  assert {'loss', 'rouge1', 'rougeL'} <= set(scores) and np.isfinite(scores['loss'])
  assert (workdir / 'eval_0.json').exists()


def test_t5_keeps_to_what_transformers_loads(tmp_path):
  """The hub T5s' unread cross-attention bias is ignored, as transformers ignores it; an embedding copy that
  differs from `shared` (which transformers would not tie) is refused."""
  model = t5(tmp_path, gated=True)
  bias = 'decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight'
  _edit_tensors(tmp_path, lambda t: t.update({bias: np.ones((8, 2), np.float32)}))
  tokens, decoder_tokens = _tokens((1, 12)), _tokens((1, 6), seed=1)
  np.testing.assert_allclose(_our_logits(tmp_path, tokens, decoder_tokens), _hf_logits(model, tokens, decoder_tokens),
                             atol=1e-4, rtol=0)
  _edit_tensors(tmp_path, lambda t: t.update({'encoder.embed_tokens.weight': t['shared.weight'] + 1}))
  with pytest.raises(errors.InputError, match=r'encoder.embed_tokens.weight.*not used'):
    hf.load_model(tmp_path)


def test_sharded_and_bfloat16_checkpoints_and_defaulted_keys(tmp_path):
  model = llama(tmp_path / 'source')
  model.save_pretrained(tmp_path / 'sharded', max_shard_size='40KB')  # Several files and their index.
  assert len(list((tmp_path / 'sharded').glob('*.safetensors'))) > 1
  assert (tmp_path / 'sharded' / hf.INDEX_FILE).exists()
  tokens = _tokens((1, 10))
  np.testing.assert_allclose(_our_logits(tmp_path / 'sharded', tokens), _hf_logits(model, tokens), atol=1e-4, rtol=0)
  model.to(torch.bfloat16).save_pretrained(tmp_path / 'bf16')
  config = json.loads((tmp_path / 'bf16' / 'config.json').read_text())
  del config['rms_norm_eps']  # Left out: LlamaConfig's default (1e-6) holds on both sides.
  (tmp_path / 'bf16' / 'config.json').write_text(json.dumps(config))
  reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / 'bf16', dtype=torch.float32)
  reloaded.eval()
  np.testing.assert_allclose(_our_logits(tmp_path / 'bf16', tokens), _hf_logits(reloaded, tokens), atol=1e-4, rtol=0)
  (tmp_path / 'sharded' / hf.INDEX_FILE).write_text('{"weight_map": 3}')  # A damaged index is named.
  with pytest.raises(errors.InputError, match='is not an index of shards'):
    hf.load_model(tmp_path / 'sharded')


@pytest.mark.parametrize('gated', [False, True], ids=['t5_v1_0', 't5_v1_1'])
def test_t5_greedy_generation_matches_transformers(tmp_path, gated):
  model_hf = t5(tmp_path, gated=gated, decoder_layers=2)  # transformers 5.24's T5 cache has encoder-many layers.
  inputs = _tokens((3, 12), seed=3)
  _, _, model, params = hf.load_model(tmp_path)
  settings = generate.Decoding(num_beams=1, max_decode_len=20, temperature=0.0)
  ours = generate.generate(params, jnp.asarray(inputs), jnp.full((3,), 12, jnp.int32), jax.random.PRNGKey(0),
                           model=model, s=settings, eos_id=-1)  # No end token: 20 tokens on both sides.
  with torch.no_grad():
    theirs = model_hf.generate(torch.tensor(inputs, dtype=torch.long), max_new_tokens=20, do_sample=False,
                               num_beams=1, eos_token_id=None)
  np.testing.assert_array_equal(np.asarray(ours), theirs[:, 1:].numpy())  # Less the start token.


def test_a_llama_whose_tokenizer_adds_bos_samples_as_transformers(tmp_path):
  """A tokenizer.json whose post-processor puts <s> first (as Llama's hub files do): transformers' tokenizer(text)
  starts with it, so our prompts and documents do too, and greedy sampling continues as generate() does."""
  import tokenizers as hf_tokenizers
  spec = test_hf_tokenizers._llama_file(hf_tokenizers)
  spec['post_processor'] = json.loads(hf_tokenizers.processors.TemplateProcessing(
      single='<s> $A', special_tokens=[('<s>', 1)]).__getstate__())
  transformers.PreTrainedTokenizerFast(
      tokenizer_object=hf_tokenizers.Tokenizer.from_str(json.dumps(spec)), bos_token='<s>', eos_token='</s>',
      unk_token='<unk>').save_pretrained(tmp_path)
  tokenizer_hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
  assert tokenizer_hf('the quick fox').input_ids[0] == 1
  model_hf = llama(tmp_path, vocab=len(tokenizer_hf))
  hf.import_checkpoint(tmp_path, tmp_path / 'run')
  run = rundir.load_run(str(tmp_path / 'run'))
  assert tokenizers.document_start(run.tokenizer) == [1]
  ours = generate.continue_text(run.model, run.params, run.tokenizer, 'the quick fox', num_tokens=6, temperature=0.0)
  with torch.no_grad():
    theirs = model_hf.generate(**tokenizer_hf('the quick fox', return_tensors='pt'), max_new_tokens=6,
                               do_sample=False, eos_token_id=None, pad_token_id=0)
  assert ours == 'the quick fox' + tokenizer_hf.decode(theirs[0, -6:], skip_special_tokens=True)
