"""Hugging Face checkpoints in and out: GPT-2, Llama (and Mistral-style models without sliding windows) and T5
(v1.0, v1.1, Flan-T5), weights as safetensors only.

`import_checkpoint(hf_dir, workdir)` reads a model directory (`config.json`, `model.safetensors` or shards with
`model.safetensors.index.json`, the tokenizer files) and writes a run directory that every other command reads:
config.json (the HF config as this codebase's model keys), tokenizer/, one checkpoint of the params at step 0,
and `imported.json` (where it came from). `export_checkpoint(workdir, hf_dir)` writes the reverse, which
`transformers` loads with `from_pretrained`.

One table per family (`_gpt2_tensors`, `_llama_tensors`, `_t5_tensors`) lists each HF tensor with the params it
becomes and the two conversions, so import and export are the same table read both ways. What this codebase does
not compute exactly as transformers does (an activation, a rope type, biases on some layers only, sliding-window
attention) is refused by name, never approximated. Pickled weights (`pytorch_model.bin`, `*.pt`, `*.ckpt`) are
refused: nothing here unpickles.

Why ~580 lines in one module: a family's table, its config mapping and its export config change together (a key
read on import must be written on export), and the directory I/O below serves all three families.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from lm import checkpoint as checkpoint_lib
from lm import config as config_lib
from lm import errors
from lm import model as model_lib
from lm import rundir
from lm import tokenizers
from lm.data import tasks

CONFIG_FILE = 'config.json'
INDEX_FILE = 'model.safetensors.index.json'
PICKLE_SUFFIXES = ('.bin', '.pt', '.pth', '.ckpt', '.pkl')
# Tensors a checkpoint may hold that transformers ignores on load: GPT-2's causal-mask buffers, old Llamas' rotary
# frequencies, and the cross-attention bias the released T5 checkpoints carry but no layer reads.
_IGNORED = re.compile(r'(^|\.)attn\.(masked_)?bias$|rotary_emb\.inv_freq$|'
                      r'^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$')
# What transformers 5.24's config classes assume for keys a config.json leaves out (from_pretrained fills them in
# alike), for the keys the mapping reads.
DEFAULTS = {
    'gpt2': {'vocab_size': 50257, 'n_positions': 1024, 'n_embd': 768, 'n_layer': 12, 'n_head': 12,
             'layer_norm_epsilon': 1e-5, 'activation_function': 'gelu_new'},
    'llama': {'vocab_size': 32000, 'hidden_size': 4096, 'intermediate_size': 11008, 'num_hidden_layers': 32,
              'num_attention_heads': 32, 'max_position_embeddings': 2048, 'rms_norm_eps': 1e-6, 'hidden_act': 'silu',
              'tie_word_embeddings': False},
    'mistral': {'vocab_size': 32000, 'hidden_size': 4096, 'intermediate_size': 14336, 'num_hidden_layers': 32,
                'num_attention_heads': 32, 'num_key_value_heads': 8, 'max_position_embeddings': 4096 * 32,
                'rms_norm_eps': 1e-6, 'hidden_act': 'silu', 'sliding_window': 4096, 'tie_word_embeddings': False},
    't5': {'vocab_size': 32128, 'd_model': 512, 'd_kv': 64, 'd_ff': 2048, 'num_layers': 6, 'num_heads': 8,
           'relative_attention_num_buckets': 32, 'relative_attention_max_distance': 128, 'layer_norm_epsilon': 1e-6,
           'feed_forward_proj': 'relu'},
}


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One HF tensor and the params it becomes: `to_ours(hf) -> [arrays]` in `ours`' order, `to_hf([arrays])`."""
  hf: str
  ours: tuple[str, ...]
  to_ours: Callable[[np.ndarray], list[np.ndarray]] = lambda w: [w]
  to_hf: Callable[[list[np.ndarray]], np.ndarray] = lambda ws: ws[0]


def _same(hf: str, ours: str) -> Tensor:
  return Tensor(hf, (ours,))


def _linear(hf: str, ours: str) -> Tensor:
  """A torch Linear weight [out, in] as our kernel [in, out]."""
  return Tensor(hf, (ours,), lambda w: [w.T], lambda ws: ws[0].T)


def _fused_qkv(hf: str, prefix: str) -> Tensor:
  """GPT-2's c_attn, a Conv1D [D, 3D] (already [in, out]) of query, key and value side by side."""
  names = tuple(f'{prefix}/{part}/kernel' for part in ('query', 'key', 'value'))
  return Tensor(hf, names, lambda w: list(np.split(w, 3, axis=-1)), lambda ws: np.concatenate(ws, axis=-1))


def _head_tied(hf: dict, tensors: dict, embedding: str, default: bool = True) -> bool:
  """Whether transformers ties the output head to `embedding`: its config asks to, and the checkpoint has no
  lm_head.weight of other values (with one, from_pretrained leaves them apart)."""
  head = tensors.get('lm_head.weight')
  return bool(hf.get('tie_word_embeddings', default)) and (
      head is None or embedding not in tensors or np.array_equal(head, tensors[embedding]))


# ----------------------------------------------------------------------------------------------------------
# GPT-2: learned positions, LayerNorm, GELU (tanh), fused QKV, tied head.


def _gpt2_model(hf: dict, tensors: dict) -> dict:
  _refuse_if(hf.get('activation_function', 'gelu_new') not in ('gelu_new', 'gelu_pytorch_tanh'),
             'activation_function', hf.get('activation_function'), "only GELU's tanh approximation (gelu_new)")
  _refuse_if(hf.get('scale_attn_by_inverse_layer_idx', False), 'scale_attn_by_inverse_layer_idx', True)
  _refuse_if(not hf.get('scale_attn_weights', True), 'scale_attn_weights', False)
  _refuse_if(hf.get('add_cross_attention', False), 'add_cross_attention', True)
  _refuse_if(not _head_tied(hf, tensors, 'transformer.wte.weight'), 'tie_word_embeddings',
             hf.get('tie_word_embeddings', True), 'a head tied to wte (and no lm_head.weight of other values)')
  d = hf['n_embd']
  return dict(architecture='decoder_only', vocab_size=hf['vocab_size'], max_len=hf['n_positions'],
              num_layers=hf['n_layer'], d_model=d, num_heads=hf['n_head'], d_ff=hf.get('n_inner') or 4 * d,
              position='learned', norm='layernorm', norm_eps=hf.get('layer_norm_epsilon', 1e-5), mlp='gelu',
              use_bias=True, tie_embeddings=True)


def _gpt2_tensors(c: model_lib.ModelConfig) -> list[Tensor]:
  tensors = [_same('transformer.wte.weight', 'embedding'), _same('transformer.wpe.weight', 'position_embedding'),
             _same('transformer.ln_f.weight', 'LayerNorm_0/scale'), _same('transformer.ln_f.bias', 'LayerNorm_0/bias')]
  for i in range(c.num_layers):
    hf, ours = f'transformer.h.{i}', f'block_{i}'
    for norm, n in (('ln_1', 0), ('ln_2', 1)):
      tensors += [_same(f'{hf}.{norm}.weight', f'{ours}/LayerNorm_{n}/scale'),
                  _same(f'{hf}.{norm}.bias', f'{ours}/LayerNorm_{n}/bias')]
    tensors += [_fused_qkv(f'{hf}.attn.c_attn.weight', f'{ours}/attention'),
                Tensor(f'{hf}.attn.c_attn.bias', tuple(f'{ours}/attention/{p}/bias' for p in ('query', 'key', 'value')),
                       lambda b: list(np.split(b, 3)), np.concatenate)]
    for hf_name, our_name in (('attn.c_proj', 'attention/out'), ('mlp.c_fc', 'mlp/wi'), ('mlp.c_proj', 'mlp/wo')):
      tensors += [_same(f'{hf}.{hf_name}.weight', f'{ours}/{our_name}/kernel'),  # Conv1D: [in, out] already.
                  _same(f'{hf}.{hf_name}.bias', f'{ours}/{our_name}/bias')]
  return tensors


def _gpt2_hf_config(c: model_lib.ModelConfig) -> dict:
  return {'model_type': 'gpt2', 'architectures': ['GPT2LMHeadModel'], 'vocab_size': c.vocab_size,
          'n_positions': c.max_len, 'n_embd': c.d_model, 'n_layer': c.num_layers, 'n_head': c.num_heads,
          'n_inner': c.hidden_dim, 'activation_function': 'gelu_new', 'layer_norm_epsilon': c.norm_eps,
          'tie_word_embeddings': True, 'resid_pdrop': 0.0, 'embd_pdrop': 0.0, 'attn_pdrop': 0.0}


# ----------------------------------------------------------------------------------------------------------
# Llama (and Mistral without a sliding window): RoPE, RMSNorm, SwiGLU, grouped-query attention, untied head.


def _rope_model(hf: dict) -> dict:
  """The model.rope_* keys of an HF config: `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`."""
  params = dict(hf.get('rope_scaling') or hf.get('rope_parameters') or {})  # transformers reads rope_scaling first.
  kind = params.get('rope_type', params.get('type', 'default'))
  base = params.get('rope_theta', hf.get('rope_theta', 10000.0))
  _refuse_if(kind not in ('default', 'linear', 'dynamic', 'llama3'), 'rope type', kind,
             "rope types 'default', 'linear', 'dynamic' and 'llama3'")
  partial = params.get('partial_rotary_factor', hf.get('partial_rotary_factor', 1.0))
  _refuse_if(partial != 1.0, 'partial_rotary_factor', partial, 'rotation of the whole head (1.0)')
  needed = {'linear': ('factor',), 'dynamic': ('factor',),
            'llama3': ('factor', 'original_max_position_embeddings', 'low_freq_factor', 'high_freq_factor')}
  missing = [key for key in needed.get(kind, ()) if key not in params]
  _refuse_if(missing, f'rope type {kind!r} without', missing, 'its parameters in rope_parameters')
  if kind == 'default':
    return {'rope_base': float(base)}
  keys = {'rope_base': float(base), 'rope_scaling': kind, 'rope_scaling_factor': float(params['factor'])}
  if kind == 'dynamic':  # transformers grows the base past max_position_embeddings.
    keys['rope_original_max_len'] = hf['max_position_embeddings']
  if kind == 'llama3':
    keys.update(rope_original_max_len=params['original_max_position_embeddings'],
                rope_low_freq_factor=float(params['low_freq_factor']),
                rope_high_freq_factor=float(params['high_freq_factor']))
  return keys


def _llama_model(hf: dict, tensors: dict) -> dict:
  _refuse_if(hf.get('hidden_act', 'silu') != 'silu', 'hidden_act', hf.get('hidden_act'), 'SwiGLU (silu)')
  _refuse_if(hf.get('attention_bias', False), 'attention_bias', True)
  _refuse_if(hf.get('mlp_bias', False), 'mlp_bias', True)
  window = hf.get('sliding_window')
  _refuse_if(window is not None and window < hf['max_position_embeddings'], 'sliding_window', window,
             'full attention (a window shorter than max_position_embeddings is sliding-window attention)')
  heads = hf['num_attention_heads']
  return dict(architecture='decoder_only', vocab_size=hf['vocab_size'], max_len=hf['max_position_embeddings'],
              num_layers=hf['num_hidden_layers'], d_model=hf['hidden_size'], num_heads=heads,
              num_kv_heads=hf.get('num_key_value_heads') or heads,
              head_dim=hf.get('head_dim') or hf['hidden_size'] // heads, d_ff=hf['intermediate_size'],
              position='rope', norm='rmsnorm', norm_eps=hf.get('rms_norm_eps', 1e-6), mlp='swiglu', use_bias=False,
              tie_embeddings=_head_tied(hf, tensors, 'model.embed_tokens.weight', default=False), **_rope_model(hf))


def _llama_tensors(c: model_lib.ModelConfig) -> list[Tensor]:
  tensors = [_same('model.embed_tokens.weight', 'embedding'), _same('model.norm.weight', 'RMSNorm_0/scale')]
  if not c.tie_embeddings:
    tensors.append(_linear('lm_head.weight', 'unembed/kernel'))
  for i in range(c.num_layers):
    hf, ours = f'model.layers.{i}', f'block_{i}'
    tensors += [_same(f'{hf}.input_layernorm.weight', f'{ours}/RMSNorm_0/scale'),
                _same(f'{hf}.post_attention_layernorm.weight', f'{ours}/RMSNorm_1/scale')]
    tensors += [_linear(f'{hf}.self_attn.{p}_proj.weight', f'{ours}/attention/{q}/kernel')
                for p, q in (('q', 'query'), ('k', 'key'), ('v', 'value'), ('o', 'out'))]
    tensors += [_linear(f'{hf}.mlp.{p}_proj.weight', f'{ours}/mlp/{q}/kernel')
                for p, q in (('gate', 'wi_gate'), ('up', 'wi'), ('down', 'wo'))]
  return tensors


def _llama_hf_config(c: model_lib.ModelConfig) -> dict:
  rope = {'rope_type': c.rope_scaling or 'default', 'rope_theta': c.rope_base}
  if c.rope_scaling:
    rope['factor'] = c.rope_scaling_factor
  if c.rope_scaling == 'llama3':
    rope.update(original_max_position_embeddings=c.rope_original_max_len, low_freq_factor=c.rope_low_freq_factor,
                high_freq_factor=c.rope_high_freq_factor)
  _refuse_if(c.rope_scaling == 'dynamic' and c.rope_original_max_len != c.max_len, 'model.rope_original_max_len',
             c.rope_original_max_len, "transformers' dynamic rope, which grows past max_position_embeddings "
             '(model.max_len)')
  return {'model_type': 'llama', 'architectures': ['LlamaForCausalLM'], 'vocab_size': c.vocab_size,
          'hidden_size': c.d_model, 'intermediate_size': c.hidden_dim, 'num_hidden_layers': c.num_layers,
          'num_attention_heads': c.num_heads, 'num_key_value_heads': c.kv_heads, 'head_dim': c.key_dim,
          'hidden_act': 'silu', 'max_position_embeddings': c.max_len, 'rms_norm_eps': c.norm_eps,
          'rope_parameters': rope, 'attention_bias': False, 'mlp_bias': False,
          'tie_word_embeddings': c.tie_embeddings,
          # The same rope as transformers 4 and other readers of Llama configs take it.
          'rope_theta': c.rope_base, **({'rope_scaling': dict(rope)} if c.rope_scaling else {})}


# ----------------------------------------------------------------------------------------------------------
# T5: relative position bias, RMSNorm, ReLU (v1.0) or gated GELU (v1.1, Flan-T5), tied head scaled or untied.


def _t5_model(hf: dict, tensors: dict) -> dict:
  mlps = {'relu': 'relu', 'gated-gelu': 'gated_gelu'}
  _refuse_if(hf.get('feed_forward_proj', 'relu') not in mlps, 'feed_forward_proj', hf.get('feed_forward_proj'),
             "'relu' (T5) and 'gated-gelu' (T5 v1.1, Flan-T5)")
  _refuse_if(hf.get('decoder_start_token_id', 0) != 0, 'decoder_start_token_id', hf.get('decoder_start_token_id'),
             "T5's start token 0")
  gated = hf['feed_forward_proj'].startswith('gated-')  # Explicit keys beat what feed_forward_proj implies.
  _refuse_if(hf.get('is_gated_act', gated) != gated, 'is_gated_act', hf.get('is_gated_act'),
             f"the value feed_forward_proj={hf['feed_forward_proj']!r} implies")
  activation = 'gelu_new' if gated else 'relu'
  _refuse_if(hf.get('dense_act_fn', activation) != activation, 'dense_act_fn', hf.get('dense_act_fn'),
             f"the activation feed_forward_proj={hf['feed_forward_proj']!r} implies ({activation})")
  # transformers 5 ties T5's head unless the checkpoint holds a different lm_head.weight, and scales the decoder
  # output by d_model**-0.5 as `scale_decoder_outputs` says (older configs: unless tie_word_embeddings is false).
  tied = _head_tied({'tie_word_embeddings': True}, tensors, 'shared.weight')
  scaled = hf.get('scale_decoder_outputs', hf.get('tie_word_embeddings', True) is not False)
  _refuse_if(scaled and not tied, 'scale_decoder_outputs', True, 'a scaled head only when it is tied (T5 v1.0)')
  return dict(architecture='encoder_decoder', vocab_size=hf['vocab_size'], num_encoder_layers=hf['num_layers'],
              num_layers=hf.get('num_decoder_layers') or hf['num_layers'], d_model=hf['d_model'],
              num_heads=hf['num_heads'], head_dim=hf['d_kv'], d_ff=hf['d_ff'], position='relative',
              relative_buckets=hf.get('relative_attention_num_buckets', 32),
              relative_max_distance=hf.get('relative_attention_max_distance', 128), norm='rmsnorm',
              norm_eps=hf.get('layer_norm_epsilon', 1e-6), mlp=mlps[hf.get('feed_forward_proj', 'relu')],
              use_bias=False, scale_attention=False, tie_embeddings=tied, scale_tied_logits=bool(scaled),
              embed_init_std=1.0, kernel_init='fan_in')


def _t5_attention(hf: str, ours: str) -> list[Tensor]:
  return [_linear(f'{hf}.{p}.weight', f'{ours}/{q}/kernel')
          for p, q in (('q', 'query'), ('k', 'key'), ('v', 'value'), ('o', 'out'))]


def _t5_mlp(hf: str, ours: str, c: model_lib.ModelConfig) -> list[Tensor]:
  if c.mlp == 'gated_gelu':  # HF: gelu(wi_0 x) * wi_1 x.
    parts = (('wi_0', 'wi_gate'), ('wi_1', 'wi'), ('wo', 'wo'))
  else:
    parts = (('wi', 'wi'), ('wo', 'wo'))
  return [_linear(f'{hf}.DenseReluDense.{p}.weight', f'{ours}/mlp/{q}/kernel') for p, q in parts]


def _t5_tensors(c: model_lib.ModelConfig) -> list[Tensor]:
  tensors = [_same('shared.weight', 'embedding')]
  if not c.tie_embeddings:
    tensors.append(_linear('lm_head.weight', 'decoder/unembed/kernel'))
  for stack, layers in (('encoder', c.encoder_layers), ('decoder', c.num_layers)):
    tensors += [_same(f'{stack}.final_layer_norm.weight', f'{stack}/RMSNorm_0/scale'),
                _same(f'{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight',
                      f'{stack}/relative_bias/rel_embedding')]
    for i in range(layers):
      hf, ours = f'{stack}.block.{i}.layer', f'{stack}/block_{i}'
      tensors += _t5_attention(f'{hf}.0.SelfAttention', f'{ours}/attention')
      if stack == 'decoder':
        tensors += _t5_attention(f'{hf}.1.EncDecAttention', f'{ours}/cross_attention')
      mlp = 2 if stack == 'decoder' else 1
      tensors += _t5_mlp(f'{hf}.{mlp}', ours, c)
      tensors += [_same(f'{hf}.{n}.layer_norm.weight', f'{ours}/RMSNorm_{n}/scale') for n in range(mlp + 1)]
  return tensors


def _t5_hf_config(c: model_lib.ModelConfig) -> dict:
  return {'model_type': 't5', 'architectures': ['T5ForConditionalGeneration'], 'vocab_size': c.vocab_size,
          'd_model': c.d_model, 'd_kv': c.key_dim, 'd_ff': c.hidden_dim, 'num_layers': c.encoder_layers,
          'num_decoder_layers': c.num_layers, 'num_heads': c.num_heads,
          'relative_attention_num_buckets': c.relative_buckets,
          'relative_attention_max_distance': c.relative_max_distance, 'layer_norm_epsilon': c.norm_eps,
          'feed_forward_proj': {'relu': 'relu', 'gated_gelu': 'gated-gelu'}[c.mlp],
          'tie_word_embeddings': c.tie_embeddings, 'scale_decoder_outputs': c.tie_embeddings and c.scale_tied_logits,
          'is_encoder_decoder': True, 'decoder_start_token_id': 0,
          'pad_token_id': 0, 'eos_token_id': 1, 'dropout_rate': 0.0}


@dataclasses.dataclass(frozen=True)
class Family:
  model_keys: Callable[[dict, dict], dict]  # (config.json, tensors) -> config.model keys; refuses what does not map.
  tensors: Callable[[model_lib.ModelConfig], list[Tensor]]
  hf_config: Callable[[model_lib.ModelConfig], dict]  # Our model -> HF config.json.
  # What a model must have to export as this family: (option, its value, or a test of the model config).
  requires: tuple[tuple[str, Any], ...]


_COMMON = (('pointer_generator', False), ('scale_tied_logits', False), ('scale_attention', True))
_STANDARD_HEADS = ('num_kv_heads', lambda c: c.kv_heads == c.num_heads and c.key_dim * c.num_heads == c.d_model)
FAMILIES = {
    'gpt2': Family(_gpt2_model, _gpt2_tensors, _gpt2_hf_config, (
        ('architecture', 'decoder_only'), ('position', 'learned'), ('norm', 'layernorm'), ('mlp', 'gelu'),
        ('use_bias', True), ('tie_embeddings', True), _STANDARD_HEADS, *_COMMON)),
    'llama': Family(_llama_model, _llama_tensors, _llama_hf_config, (
        ('architecture', 'decoder_only'), ('position', 'rope'), ('norm', 'rmsnorm'), ('mlp', 'swiglu'),
        ('use_bias', False), *_COMMON)),
    't5': Family(_t5_model, _t5_tensors, _t5_hf_config, (
        ('architecture', 'encoder_decoder'), ('position', 'relative'), ('norm', 'rmsnorm'),
        ('mlp', lambda c: c.mlp in ('relu', 'gated_gelu')), ('use_bias', False), ('scale_attention', False),
        ('num_kv_heads', lambda c: c.kv_heads == c.num_heads), ('pointer_generator', False))),
}
FAMILIES['mistral'] = FAMILIES['llama']  # Llama's layout; its sliding window is refused unless it is off.


def _refuse_if(bad: Any, key: str, value: Any, supported: str = '') -> None:
  if bad:
    raise errors.InputError(f'unsupported Hugging Face option {key}={value!r}' + (f'; supported: {supported}'
                                                                                 if supported else '')
                            + ': this codebase would compute another function, so it does not import it')


# ----------------------------------------------------------------------------------------------------------
# Reading and writing a Hugging Face directory.


def read_hf_config(hf_dir: str) -> dict:
  path = os.path.join(hf_dir, CONFIG_FILE)
  if not os.path.isdir(hf_dir):
    raise errors.MissingError(f'--hf_dir={hf_dir!r} is not a directory')
  if not os.path.isfile(path):
    raise errors.MissingError(f'{hf_dir!r} has no {CONFIG_FILE}: is it a Hugging Face model directory?')
  hf = tokenizers.read_json_object(path)
  model_type = hf.get('model_type')
  if model_type not in FAMILIES:
    raise errors.InputError(f'{path}: model_type {model_type!r} (architectures {hf.get("architectures")}) is not '
                            f'supported; supported: {sorted(FAMILIES)}')
  return {**DEFAULTS[model_type], **hf}


def _safetensors_files(hf_dir: str) -> list[str]:
  """The weight files in transformers' order: model.safetensors, else the index's shards; pickles refused."""
  names = sorted(os.listdir(hf_dir))
  if 'model.safetensors' in names:
    return [os.path.join(hf_dir, 'model.safetensors')]
  index = os.path.join(hf_dir, INDEX_FILE)
  if os.path.isfile(index):
    try:
      with open(index, encoding='utf-8') as f:
        shards = sorted(set(json.load(f)['weight_map'].values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
      raise errors.InputError(f'{index} is not an index of shards (JSON with a weight_map): {e!r}') from None
    missing = [s for s in shards if not os.path.isfile(os.path.join(hf_dir, s))]
    if missing:
      raise errors.MissingError(f'{index} names shards that are not in {hf_dir}: {missing}')
    return [os.path.join(hf_dir, s) for s in shards]
  found = [n for n in names if n.endswith('.safetensors')]
  if len(found) > 1:
    raise errors.InputError(f'{hf_dir} holds {len(found)} *.safetensors files but no {INDEX_FILE} naming its shards')
  if found:
    return [os.path.join(hf_dir, found[0])]
  pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
  if pickles:
    raise errors.InputError(
        f'{hf_dir} holds weights only as pickles ({", ".join(pickles)}), which can run code when read; this codebase '
        'reads safetensors only. Convert them where you trust the file, e.g. with transformers: '
        'AutoModel.from_pretrained(DIR).save_pretrained(DIR), which writes model.safetensors.')
  raise errors.MissingError(f'{hf_dir} has no *.safetensors weights')


def read_tensors(hf_dir: str) -> dict[str, np.ndarray]:
  """Every tensor of the directory's safetensors files, as float32 numpy arrays, by name."""
  from safetensors import safe_open  # The hf extra: only import and export need it.
  tensors = {}
  for path in _safetensors_files(hf_dir):
    try:  # 'flax' reads bfloat16, which numpy cannot; on the CPU, not an accelerator's memory.
      with safe_open(path, framework='flax') as f, jax.default_device(jax.local_devices(backend='cpu')[0]):
        for name in f.keys():
          tensors[name] = np.asarray(f.get_tensor(name), np.float32)
    except Exception as e:  # safetensors raises its own SafetensorError for a damaged file.
      raise errors.InputError(f'{path} is not a readable safetensors file: {e}') from None
  return tensors


def _normalise_names(tensors: dict[str, np.ndarray], model_type: str) -> dict[str, np.ndarray]:
  """GPT-2 checkpoints saved from GPT2Model (the hub's `gpt2`) lack the 'transformer.' prefix."""
  if model_type == 'gpt2':
    return {name if name.startswith(('transformer.', 'lm_head.')) else f'transformer.{name}': value
            for name, value in tensors.items()}
  return tensors


def _expected_shapes(model: Any, config: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  lengths = tasks.row_lengths(config.data)
  variables = jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), target_len=lengths.decoder,
                                                          input_len=lengths.encoder))
  flat = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(variables['params']))[0]
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(leaf.shape) for path, leaf in flat}


def _nest(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    *parents, leaf = name.split('/')
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def params_from_hf(tensors: dict[str, np.ndarray], family: Family, model_config: model_lib.ModelConfig,
                   expected: dict[str, tuple[int, ...]], source: str) -> dict:
  """Our params tree from HF tensors by the family's table; a missing, misshapen or unused tensor is refused."""
  flat, used = {}, set()
  for t in family.tensors(model_config):
    if t.hf not in tensors:
      raise errors.InputError(f'{source}: tensor {t.hf} is missing, though its config.json needs it')
    for name, value in zip(t.ours, t.to_ours(tensors[t.hf])):
      if tuple(value.shape) != expected[name]:
        raise errors.InputError(f'{source}: tensor {t.hf} has shape {tuple(tensors[t.hf].shape)}, which disagrees '
                                f'with its config.json (the model needs {expected[name]} for {name})')
      flat[name] = np.ascontiguousarray(value, np.float32)
    used.add(t.hf)
  # Copies of a tied embedding, which transformers ties again on load. T5's must equal `shared`; a decoder-only
  # family's head was judged by `_head_tied` already.
  shared = tensors.get('shared.weight')
  copies = {n for n in ('lm_head.weight', 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight')
            if n in tensors and (shared is None or np.array_equal(tensors[n], shared))}
  unused = sorted(n for n in tensors if n not in used and n not in copies and not _IGNORED.search(n))
  if unused:
    raise errors.InputError(f'{source}: tensors {unused[:5]}{" ..." if len(unused) > 5 else ""} are not used by the '
                            'mapping of this config.json; refusing to drop weights silently')
  missing = sorted(set(expected) - set(flat))
  if missing:  # A table that does not cover the model is a bug here, not bad input.
    raise AssertionError(f'the mapping leaves params unset: {missing}')
  return _nest(flat)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Import: a Hugging Face directory -> a run directory.


def run_config(hf: dict, tensors: dict, tokenizer: Any = None) -> ml_collections.ConfigDict:
  """The run's config: defaults, the HF model as config.model keys, data and decoding as transformers uses them;
  with `tokenizer` (imported), the data keys that name it."""
  config = config_lib.defaults()
  model_keys = FAMILIES[hf['model_type']].model_keys(hf, tensors)
  config.model.update(dtype='float32', dropout=0.0, **model_keys)  # float32: transformers' numbers on a CPU.
  if tokenizer is not None:
    kind = tokenizer.to_dict()['kind']
    config.data.tokenizer = kind
    if kind == 'sentencepiece':  # tokenizer_cache checks a saved SentencePiece model against these.
      config.data.update(spm_vocab_size=tokenizer.vocab_size, spm_model_type=tokenizer.model_type)
  if model_keys['architecture'] == 'encoder_decoder':
    # T5's pipeline: summarization with its prefix, scored by ROUGE on an offline split; decoding as
    # generate(num_beams=4, max_length=50), whose max_length counts the start token.
    config.data.update(name='python_docstrings', task='seq2seq', prefix='summarize: ', max_input_len=512)
    config.eval.metrics = ('rouge',)
    config.decode.update(num_beams=4, max_decode_len=49, alpha=1.0, beam_convention='hf')
  else:
    config.data.seq_len = min(model_keys['max_len'], 1024)
  config_lib.validate(config)
  return config


def load_model(hf_dir: str, tokenizer: Any = None) -> tuple[dict, ml_collections.ConfigDict, Any, dict]:
  """(HF config.json, the run config, our model, its params) of an HF model directory (`run_config`'s)."""
  hf = read_hf_config(hf_dir)
  tensors = _normalise_names(read_tensors(hf_dir), hf['model_type'])
  config = run_config(hf, tensors, tokenizer)
  model = rundir.build_model(config, config.model.vocab_size)
  params = params_from_hf(tensors, FAMILIES[hf['model_type']], model.config, _expected_shapes(model, config), hf_dir)
  return hf, config, model, params


def import_checkpoint(hf_dir: str, workdir: str) -> str:
  """Writes run directory `workdir` from HF model directory `hf_dir`; returns a one-line summary."""
  hf_dir, workdir = rundir.resolve(hf_dir), rundir.resolve(workdir)
  if os.path.exists(workdir) and not (os.path.isdir(workdir) and not os.listdir(workdir)):
    raise errors.InputError(f'--workdir={workdir} exists and is not an empty directory: import into a new one')
  read_hf_config(hf_dir)  # A wrong --hf_dir named as such, before its tokenizer is looked for.
  tokenizer = tokenizers.import_hf_tokenizer(hf_dir)
  hf, config, _, params = load_model(hf_dir, tokenizer)
  staging = workdir + '.importing'  # Renamed into place when complete: no half-imported run directory.
  if os.path.exists(staging):  # Left by an import that was killed.
    shutil.rmtree(staging)
  os.makedirs(staging)
  rundir.write_config(staging, config)
  tokenizer.save(os.path.join(staging, rundir.TOKENIZER_DIR))
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(staging, rundir.CHECKPOINT_DIR), keep=1, async_save=False)
  try:
    checkpointer.save(0, {'params': params}, None)
    checkpointer.wait()
  finally:
    checkpointer.close()
  files = [os.path.join(hf_dir, n) for n in sorted(os.listdir(hf_dir)) if os.path.isfile(os.path.join(hf_dir, n))]
  with open(os.path.join(staging, rundir.IMPORTED_FILE), 'w') as f:
    json.dump({'source': hf_dir, 'model_type': hf['model_type'], 'architectures': hf.get('architectures'),
               'files': {os.path.basename(p): _sha256(p) for p in files}}, f, indent=2)
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  if os.path.isdir(workdir):
    os.rmdir(workdir)  # Empty (checked above).
  os.rename(staging, workdir)
  count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
  return (f'imported {hf["model_type"]} ({count:,} params, tokenizer {tokenizer.to_dict()["kind"]} of '
          f'{tokenizer.vocab_size} ids) from {hf_dir} into {workdir}')


# ----------------------------------------------------------------------------------------------------------
# Export: a run directory -> a Hugging Face directory.


def family_of(model_config: model_lib.ModelConfig) -> str:
  """The HF model_type a model exports as; refuses naming the first option no family has."""
  def holds(key, want):
    return want(model_config) if callable(want) else getattr(model_config, key) == want

  for name in ('gpt2', 'llama', 't5'):
    if all(holds(key, want) for key, want in FAMILIES[name].requires):
      return name
  c = model_config
  raise errors.InputError(
      f'this model (architecture={c.architecture!r}, position={c.position!r}, norm={c.norm!r}, mlp={c.mlp!r}, '
      f'use_bias={c.use_bias}) is none of the exportable families: GPT-2 (learned, layernorm, gelu, biases, tied), '
      'Llama (rope, rmsnorm, swiglu, no biases), T5 (encoder_decoder, relative, rmsnorm, no biases)')


def params_to_hf(params: Any, family: Family, model_config: model_lib.ModelConfig) -> dict[str, np.ndarray]:
  flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(leaf, np.float32)
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
  return {t.hf: np.ascontiguousarray(t.to_hf([flat[name] for name in t.ours])) for t in family.tensors(model_config)}


def save_model(model_config: model_lib.ModelConfig, params: Any, hf_dir: str, *, eos_id: int | None = None,
               pad_id: int | None = None, bos_id: int | None = None) -> str:
  """Writes params as an HF model directory's model.safetensors and config.json; returns its model_type."""
  from safetensors.numpy import save_file  # The hf extra: only import and export need it.
  model_type = family_of(model_config)
  family = FAMILIES[model_type]
  hf_config = family.hf_config(model_config)
  ids = {'eos_token_id': eos_id, 'pad_token_id': pad_id, 'bos_token_id': bos_id}
  hf_config.update({k: v for k, v in ids.items() if v is not None}, torch_dtype='float32')
  os.makedirs(hf_dir, exist_ok=True)
  save_file(params_to_hf(params, family, model_config), os.path.join(hf_dir, 'model.safetensors'),
            metadata={'format': 'pt'})  # transformers reads the format key.
  with open(os.path.join(hf_dir, CONFIG_FILE), 'w') as f:
    json.dump(hf_config, f, indent=2)
  return model_type


def export_checkpoint(workdir: str, hf_dir: str) -> str:
  """Writes `workdir`'s latest params as an HF model directory `hf_dir` (safetensors, config.json, tokenizer)."""
  run = rundir.load_run(workdir)
  hf_dir = rundir.resolve(hf_dir)
  if os.path.exists(hf_dir) and os.listdir(hf_dir):  # Old shards or an index there would be read instead.
    raise errors.InputError(f'--hf_dir={hf_dir} exists and is not empty: export into a new directory')
  t = run.tokenizer
  model_type = save_model(run.model.config, run.params, hf_dir, eos_id=t.eos_id, pad_id=t.pad_id,
                          bos_id=getattr(t, 'bos_id', None))
  tokenizer_note = tokenizers.export_hf_tokenizer(t, hf_dir)
  return f'exported {model_type} of {workdir} step {run.step} to {hf_dir}; {tokenizer_note}'
