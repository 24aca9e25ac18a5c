"""The one config schema: every key declared once, every bad value named by its key, old run directories read in
today's keys."""
import dataclasses
import json
import re

import pytest

from experiments import base
from lm import config as config_lib
from lm import decode
from lm import evaluate
from lm import hardware
from lm import layers
from lm import model as model_lib
from lm import optim
from lm import parallel
from lm.data import datasets
from lm.data import tasks


def seq2seq_config():
  c = base.get_config()
  c.model.architecture = 'encoder_decoder'
  c.data.update(name='reverse', task='seq2seq')
  c.eval.metrics = ('rouge', 'exact_match')
  return c


def test_the_default_experiment_is_the_schema():
  assert base.get_config().to_dict() == dataclasses.asdict(config_lib.Config())
  model_fields = {f.name: f.default for f in dataclasses.fields(model_lib.ModelConfig)}
  assert model_fields == base.get_config().model.to_dict()  # ModelConfig declares no key of its own.


def test_choices_are_the_implementations_names():
  assert set(config_lib.CHOICES['model.kernel_init']) == set(layers.KERNEL_INITS)
  assert set(config_lib.CHOICES['model.norm']) == set(layers.NORMS)
  assert set(config_lib.CHOICES['model.mlp']) == set(layers.MLP_ACTIVATIONS)
  assert set(config_lib.CHOICES['model.attention']) == {*layers.ATTENTION_IMPLEMENTATIONS, 'cudnn'}
  assert set(config_lib.CHOICES['model.dtype']) == {'auto', *model_lib.DTYPES} == {'auto', *hardware.DTYPES}
  assert set(config_lib.CHOICES['model.remat']) == {'none', *model_lib.REMAT_POLICIES}
  assert config_lib.CHOICES['model.size'] == ('', *model_lib.SIZES)
  assert config_lib.CHOICES['model.rope_scaling'] == layers.ROPE_SCALINGS
  assert set(config_lib.UNSIZED_SHAPE) == set(model_lib.Size._fields)
  assert config_lib.CHOICES['parallel.strategy'] == parallel.STRATEGIES
  assert config_lib.CHOICES['data.task'] == tasks.TASKS
  assert config_lib.CHOICES['eval.split'] == datasets.SPLITS
  assert set(config_lib.CHOICES['decode.beam_convention']) == set(decode.BEAM_SEARCHES)
  assert config_lib.METRICS == tuple(evaluate.METRICS)
  for schedule in config_lib.CHOICES['train.schedule']:
    c = base.get_config().train
    c.schedule = schedule
    assert callable(optim.make_schedule(c))


@pytest.mark.parametrize('key, value, message', [
    ('model.norm', 'batchnorm', "model.norm='batchnorm' must be one of ('layernorm', 'rmsnorm')"),
    ('data.tokenizer', 'words', "data.tokenizer='words' must be one of"),
    ('train.schedule', 'linear', "train.schedule='linear' must be one of"),
    ('decode.sample_temperature', -0.5, 'decode.sample_temperature=-0.5 must be >= 0'),
    ('decode.sample_num_tokens', -1, 'decode.sample_num_tokens=-1 must be >= 0'),
])
def test_each_choice_and_range_is_checked_by_validate(key, value, message):
  config = base.get_config()
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(config_lib.ConfigError, match=message.replace('(', r'\(').replace(')', r'\)')):
    config_lib.validate(config)


def test_an_old_config_json_reads_in_todays_keys():
  # A config.json as this project wrote it before the schema: sample.*, data.vocab_size, decode.max_input_len,
  # and no model.architecture (it came with the encoder-decoder).
  old = base.get_config().to_dict()
  old['sample'] = {'prompt': 'JULIET:', 'num_tokens': 7, 'temperature': 0.5, 'top_k': 3}
  for key in ('sample_prompt', 'sample_num_tokens', 'sample_temperature', 'sample_top_k'):
    del old['decode'][key]
  old['data']['vocab_size'] = 1234
  del old['data']['spm_vocab_size']
  old['decode']['max_input_len'] = 512
  del old['model']['architecture']
  new = config_lib.upgrade(json.loads(json.dumps(old)))
  assert 'sample' not in new and 'max_input_len' not in new['decode'] and 'vocab_size' not in new['data']
  assert new['decode']['sample_prompt'] == 'JULIET:' and new['decode']['sample_num_tokens'] == 7
  assert new['decode']['sample_temperature'] == 0.5 and new['decode']['sample_top_k'] == 3
  assert new['data']['spm_vocab_size'] == 1234
  assert new['model']['architecture'] == 'decoder_only'
  assert set(new) == set(base.get_config()) and all(set(new[s]) == set(base.get_config()[s])
                                                      for s in new if isinstance(new[s], dict))


@pytest.mark.parametrize('key, value, message', [
    ('eval.split', 'dev', "eval.split='dev' must be one of"),
    ('eval.metrics', ('rouge', 'meteor'), 'eval.metrics='),
    ('eval.every_steps', 7, 'must be 0 or a multiple of train.eval_every (500)'),
    ('eval.num_examples', -1, 'eval.num_examples=-1'),
    ('eval.batch_size', 0, 'eval.batch_size=0'),
    ('decode.num_beams', 0, 'decode.num_beams=0'),
    ('decode.max_decode_len', 0, 'decode.max_decode_len=0'),
    ('decode.alpha', -0.5, 'decode.alpha=-0.5'),
    ('decode.beam_convention', 'fairseq', "decode.beam_convention='fairseq' must be one of ('t5x', 'hf')"),
    ('decode.temperature', -1.0, 'decode.temperature=-1.0'),
    ('decode.top_k', -1, 'decode.top_k=-1'),
    ('decode.top_p', 0.0, 'decode.top_p=0.0'),
])
def test_bad_eval_and_decode_values_name_the_key(key, value, message):
  config = seq2seq_config()
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    config_lib.validate(config)


def test_generation_metrics_need_seq2seq_data():
  config = base.get_config()
  config_lib.validate(config)  # The LM default: no generation metrics.
  config.eval.metrics = ('rouge',)
  with pytest.raises(ValueError, match="needs data.task='seq2seq'"):
    config_lib.validate(config)


def test_an_unknown_key_names_the_nearest_declared_one():
  for key in ('seed', 'model', 'model.d_model', 'train.learning_rate'):
    config_lib.check_key(key)  # Declared: a key or a section.
  cases = {'train.learnin_rate': "unknown config key 'train.learnin_rate'; did you mean 'train.learning_rate'?",
           'modle.d_model': "did you mean 'model.d_model'?",
           'learning_rate': "did you mean 'train.learning_rate'?",  # The right name in its section.
           'nonexistent': "unknown config key 'nonexistent'; lm/config.py declares every key"}
  for key, message in cases.items():
    with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
      config_lib.check_key(key)
  assert set(config_lib.keys()) >= {'seed', 'init_from', 'model.d_model', 'train.restart_if_unrestorable'}
