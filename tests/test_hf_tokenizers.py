"""Imported Hugging Face tokenizers give the ids and text transformers gives, from tiny tokenizers trained here.

The reference is `transformers.AutoTokenizer.from_pretrained(dir)`: encode with add_special_tokens=False, decode
with skip_special_tokens=True. Each directory is written as transformers writes one (save_pretrained), in the
shapes real checkpoints have: T5 (spiece.model, with and without tokenizer.json), GPT-2 byte-level BPE (its
class and a plain tokenizers file), Llama byte-fallback BPE (a Llama-2-style file under LlamaTokenizer, which
transformers 5 rebuilds, and a metaspace file read as it is).
"""

import io
import json
import os
import random
import re
import shutil
import subprocess
import sys

from conftest import data_config
import numpy as np
import pytest

from lm import config as config_lib
from lm import errors
from lm import tokenizers
from lm.data import tokenizer_cache

# Training text: a few hundred distinct words, accents and some CJK; the edge cases below hold characters it lacks.
_WORDS = tuple(('the quick brown fox jumps over lazy dog and then some more words of ordinary English prose about '
                'tokenizers models training data numbers 2024 3.14 héllo wörld naïve café où être déjà vu '
                '你好 世界 谢谢 日本語 emoji 🙂 punctuation , . ! ? ; : " ( ) don\'t it\'s we\'re').split())
_WORDS += tuple(a + b + c for a in ('ka', 'lo', 'mi', 'ne', 'ru', 'st', 'th') for b in ('re', 'an', 'o')
                for c in ('', 'ng', 's', 'ed'))  # Pseudo-words: enough distinct substrings for the vocabularies.
TRAINING_TEXT = [' '.join(random.Random(i).choices(_WORDS, k=12)) for i in range(400)]

TEXTS = [
    '', ' ', '  ', 'hello', 'hello world', '  leading', 'trailing  ', 'multiple   spaces', 'tab\tthere',
    '\ttab first', 'new\nline', 'para\n\npara', ' \n \n', '\r\n', 'Héllo café naïve', 'e\u0301 combining',
    '你好世界', '日本語のテキスト', '🙂 emoji 🚀', '<extra_id_0>', 'a <extra_id_0> b', 'x<extra_id_17>y',
    '<extra_id_100>', '</s>', 'a</s>b', '<pad> <unk>', '<s> x', '<|endoftext|>', 'a<|endoftext|> b', '12345 67.89',
    'Hello, world! (ok?) "quotes" — dash…', "don't it's we're", 'Hello , world . ok ?', 'ﬁ Ａ ① ½',
    '\u00a0nbsp', 'a\x85b', 'a\u2028b', '\u3000x', 'a\u200bb', '\x00', '▁', 'a▁b', '<0x41>', 'zzz qqq ~~~ ^^^',
]
# Texts whose every character some token spells: token_bytes sums to their UTF-8 length.
ORDINARY = ['hello world', 'multiple   spaces and\ttabs\nnewlines\n\n', 'Héllo café 你好 🙂', '  leading',
            'trailing  ', '12345 67.89, "quotes"!', "don't stop"]


@pytest.fixture(scope='module')
def hf():
  """transformers (the reference) and tokenizers; skipped without them (a failure under CI=true: conftest.py)."""
  pytest.importorskip('tokenizers', reason='the hf extra (tokenizers) is not installed')
  return pytest.importorskip('transformers', reason='the hf extra (transformers) is not installed')


def _set_config(directory, **values):
  path = os.path.join(directory, 'tokenizer_config.json')
  config = json.load(open(path)) if os.path.exists(path) else {}
  config.update(values)
  with open(path, 'w') as f:
    json.dump(config, f)


def _spiece(vocab_size: int = 180, **options) -> bytes:
  """A tiny SentencePiece unigram model with T5's settings (pad 0, eos 1, unk 2, nmt_nfkc, no byte fallback)."""
  import sentencepiece as spm
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(TRAINING_TEXT), model_writer=model, model_type='unigram', vocab_size=vocab_size,
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2, **options)
  return model.getvalue()


def _t5_dirs(hf, root):
  """'t5_spiece': spiece.model and tokenizer_config.json; 't5': that after save_pretrained (tokenizer.json too),
  as Hub T5 checkpoints are; 't5_clean_up': clean_up_tokenization_spaces on."""
  spiece = root / 't5_spiece'
  spiece.mkdir()
  (spiece / 'spiece.model').write_bytes(_spiece())
  _set_config(spiece, tokenizer_class='T5Tokenizer', extra_ids=100)
  shutil.copytree(spiece, root / 't5')
  hf.T5Tokenizer.from_pretrained(str(root / 't5')).save_pretrained(str(root / 't5'))
  shutil.copytree(root / 't5', root / 't5_clean_up')
  _set_config(root / 't5_clean_up', clean_up_tokenization_spaces=True)
  return {'t5_spiece': spiece, 't5': root / 't5', 't5_clean_up': root / 't5_clean_up'}


def _gpt2_dirs(hf, root):
  """'gpt2': saved by GPT2TokenizerFast (tokenizer_class GPT2Tokenizer, which transformers 5 rebuilds);
  'gpt2_file': the same pipeline saved by PreTrainedTokenizerFast, read as it is; 'gpt2_prefix': 'gpt2' with
  add_prefix_space, which the rebuilt pipeline follows and the file does not say."""
  import tokenizers as hf_tokenizers
  tokenizer = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE())
  tokenizer.pre_tokenizer = hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = hf_tokenizers.decoders.ByteLevel()
  tokenizer.train_from_iterator(TRAINING_TEXT, hf_tokenizers.trainers.BpeTrainer(
      vocab_size=400, special_tokens=['<|endoftext|>'], show_progress=False,
      initial_alphabet=hf_tokenizers.pre_tokenizers.ByteLevel.alphabet()))
  model = json.loads(tokenizer.to_str())['model']
  hf.GPT2TokenizerFast(vocab=model['vocab'], merges=[tuple(m) for m in model['merges']]).save_pretrained(
      str(root / 'gpt2'))
  hf.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token='<|endoftext|>').save_pretrained(
      str(root / 'gpt2_file'))
  shutil.copytree(root / 'gpt2', root / 'gpt2_prefix')
  _set_config(root / 'gpt2_prefix', add_prefix_space=True)
  return {'gpt2': root / 'gpt2', 'gpt2_file': root / 'gpt2_file', 'gpt2_prefix': root / 'gpt2_prefix'}


def _llama_file(hf_tokenizers) -> dict:
  """A Llama-style BPE pipeline: <unk>, <s>, </s> at 0, 1, 2, then <0x00>..<0xFF>, metaspace, byte fallback."""
  tokenizer = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE(unk_token='<unk>', byte_fallback=True,
                                                               fuse_unk=True))
  tokenizer.pre_tokenizer = hf_tokenizers.pre_tokenizers.Metaspace(prepend_scheme='first', split=False)
  tokenizer.train_from_iterator(TRAINING_TEXT, hf_tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=['<unk>', '<s>', '</s>'], limit_alphabet=60, show_progress=False))
  spec = json.loads(tokenizer.to_str())
  learnt = sorted(spec['model']['vocab'], key=spec['model']['vocab'].get)[3:]
  pieces = ['<unk>', '<s>', '</s>'] + [f'<0x{b:02X}>' for b in range(256)] + learnt
  spec['model']['vocab'] = {piece: i for i, piece in enumerate(pieces)}
  spec['decoder'] = json.loads(hf_tokenizers.decoders.Sequence([
      hf_tokenizers.decoders.Replace('▁', ' '), hf_tokenizers.decoders.ByteFallback(), hf_tokenizers.decoders.Fuse(),
      hf_tokenizers.decoders.Strip(content=' ', left=1)]).__getstate__())
  return spec


def _llama_dirs(hf, root):
  """'llama': a Llama-2 Hub file (normaliser Prepend('▁') + Replace(' ', '▁'), no pre-tokenizer) under
  LlamaTokenizerFast, legacy false, which transformers 5 rebuilds with a Metaspace pre-tokenizer; 'llama_file':
  a metaspace file read as it is."""
  import tokenizers as hf_tokenizers
  spec = _llama_file(hf_tokenizers)
  llama_2 = dict(spec, pre_tokenizer=None, normalizer={'type': 'Sequence', 'normalizers': [
      {'type': 'Prepend', 'prepend': '▁'}, {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '▁'}]})
  for name, pipeline in (('llama', llama_2), ('llama_file', spec)):
    tokenizer = hf_tokenizers.Tokenizer.from_str(json.dumps(pipeline))
    hf.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token='<s>', eos_token='</s>',
                               unk_token='<unk>').save_pretrained(str(root / name))
  _set_config(root / 'llama', tokenizer_class='LlamaTokenizerFast', legacy=False)
  return {'llama': root / 'llama', 'llama_file': root / 'llama_file'}


@pytest.fixture(scope='module')
def hf_dirs(hf, tmp_path_factory):
  root = tmp_path_factory.mktemp('hf')
  return {name: str(path) for name, path in {**_t5_dirs(hf, root), **_gpt2_dirs(hf, root),
                                             **_llama_dirs(hf, root)}.items()}


NAMES = ['t5_spiece', 't5', 't5_clean_up', 'gpt2', 'gpt2_file', 'gpt2_prefix', 'llama', 'llama_file']


@pytest.fixture(scope='module')
def loaded(hf, hf_dirs):
  """name -> (ours, transformers')."""
  return {name: (tokenizers.import_hf_tokenizer(path), hf.AutoTokenizer.from_pretrained(path))
          for name, path in hf_dirs.items()}


def _random_texts(n: int) -> list[str]:
  pool = list('abcdefgh xyzHé你好🙂.,!?\'"') + ['the ', ' ', '  ', '\t', '\n', '\n\n', '\r', '\x85', '\u2028', '\u3000',
                                               '\xa0', '\u200b', '\x1c', '▁', '<extra_id_0>', '</s>', '<pad>', '<unk>',
                                               '<s>', '<|endoftext|>', 'ﬁ', 'Ａ', 'e\u0301', '\x00', '<0x41>', '＜/s＞',
                                               '＜unk＞', "n't", ' .', "'s"]
  rng = random.Random(0)
  return [''.join(rng.choices(pool, k=rng.randint(0, 12))) for _ in range(n)]


@pytest.mark.parametrize('name', NAMES)
def test_ids_and_text_are_transformers(loaded, name):
  ours, theirs = loaded[name]
  for text in TEXTS + _random_texts(300):
    want = theirs(text, add_special_tokens=False).input_ids
    ids = ours.encode(text)
    assert ids.dtype == np.int32
    assert ids.tolist() == want, text
    assert ours.decode(ids) == theirs.decode(want, skip_special_tokens=True), text


@pytest.mark.parametrize('name', NAMES)
def test_vocabulary_and_special_ids_are_transformers(loaded, name):
  ours, theirs = loaded[name]
  assert ours.vocab_size == len(theirs) == ours.token_bytes.shape[0]
  assert ours.eos_id == theirs.eos_token_id is not None
  # Without a pad token, pad = eos (what GPT-2's and Llama's users set).
  assert ours.pad_id == (theirs.eos_token_id if theirs.pad_token_id is None else theirs.pad_token_id)
  assert getattr(ours, 'unk_id', None) == theirs.unk_token_id
  assert ours.token_bytes[[ours.pad_id, ours.eos_id]].tolist() == [0, 0]


def test_the_special_ids_are_the_models(loaded):
  gpt2, llama, t5 = loaded['gpt2'][0], loaded['llama'][0], loaded['t5'][0]
  end = gpt2.encode('<|endoftext|>').tolist()
  assert end == [gpt2.eos_id] == [gpt2.pad_id] == [gpt2.bos_id]
  assert (llama.unk_id, llama.bos_id, llama.eos_id, llama.pad_id) == (0, 1, 2, 2)
  assert (t5.pad_id, t5.eos_id, t5.unk_id) == (0, 1, 2)


def test_t5_is_a_sentencepiece_tokenizer_with_t5s_sentinels(loaded):
  for name in ('t5', 't5_spiece'):
    ours, theirs = loaded[name]
    assert isinstance(ours, tokenizers.SentencePieceTokenizer)
    assert (ours.to_dict()['kind'], ours.model_type, ours.num_sentinels) == ('sentencepiece', 'unigram', 100)
    assert [ours.sentinel_id(i) for i in (0, 1, 99)] == theirs.convert_tokens_to_ids(
        ['<extra_id_0>', '<extra_id_1>', '<extra_id_99>'])
    assert ours.sentinel_id(0) == ours.vocab_size - 1


def test_t5_differs_from_raw_sentencepiece_where_transformers_does(loaded):
  """Why HfT5Tokenizer mirrors transformers' pipeline rather than calling SentencePiece: specials in the text,
  Unicode whitespace the normalisation keeps (U+0085), and decoding a leading lone '▁'."""
  import sentencepiece as spm
  ours, theirs = loaded['t5']
  raw = spm.SentencePieceProcessor(model_proto=ours.model_proto)
  for text in ('<extra_id_0>', 'a</s>b', 'a\x85b'):
    want = theirs(text, add_special_tokens=False).input_ids
    assert raw.encode(text) != want
    assert ours.encode(text).tolist() == want
  ids = [raw.piece_to_id('▁'), *raw.encode('hello')]
  assert raw.decode(ids) != theirs.decode(ids, skip_special_tokens=True) == ours.decode(ids)


def test_llama_class_rebuilds_what_the_file_says(loaded, hf_dirs):
  """transformers 5 runs a LlamaTokenizer directory through a Metaspace pipeline it builds itself, which differs
  from the Llama-2-style file (a dummy prefix even before a space); the import follows transformers."""
  import tokenizers as hf_tokenizers
  ours, theirs = loaded['llama']
  as_filed = hf_tokenizers.Tokenizer.from_file(os.path.join(hf_dirs['llama'], 'tokenizer.json'))
  want = theirs('  leading', add_special_tokens=False).input_ids
  assert as_filed.encode('  leading', add_special_tokens=False).ids != want
  assert ours.encode('  leading').tolist() == want


def test_clean_up_tokenization_spaces_is_applied_where_asked(loaded):
  ids = loaded['t5'][0].encode('the dog , then . ok ?')
  assert loaded['t5'][0].decode(ids) == 'the dog , then . ok ?'
  assert loaded['t5_clean_up'][0].decode(ids) == 'the dog, then. ok?' == loaded['t5_clean_up'][1].decode(
      ids.tolist(), skip_special_tokens=True)


@pytest.mark.parametrize('name', ['gpt2', 'gpt2_file', 'llama', 'llama_file'])
def test_token_bytes_sum_to_the_utf8_length(loaded, name):
  ours = loaded[name][0]
  for text in ORDINARY:
    total = int(ours.token_bytes[ours.encode(text)].sum())
    # A metaspace pipeline's dummy prefix '▁' is one space byte the text lacks, unless it starts with a space.
    prefix = int(name.startswith('llama') and not text.startswith(' '))
    assert total == len(text.encode('utf-8')) + prefix, text
  assert ours.token_bytes.min() >= 0
  if name.startswith('llama'):  # The dummy prefix '▁', then five byte-fallback pieces.
    assert ours.token_bytes[ours.encode('\x00🚀')].tolist() == [1] * 6


@pytest.mark.parametrize('name', ['t5', 'gpt2', 'llama'])
def test_saved_in_a_run_directory_loads_back(loaded, tmp_path, name):
  ours = loaded[name][0]
  run_tokenizer = tmp_path / 'run' / 'tokenizer'
  ours.save(str(run_tokenizer))
  back = tokenizers.load_tokenizer(str(run_tokenizer))
  assert type(back) is type(ours)
  assert back.to_dict() == ours.to_dict()
  np.testing.assert_array_equal(back.token_bytes, ours.token_bytes)
  for text in TEXTS:
    assert back.encode(text).tolist() == ours.encode(text).tolist(), text
    assert back.decode(ours.encode(text)) == ours.decode(ours.encode(text)), text
  if name != 't5':
    assert (run_tokenizer / 'hf_tokenizer.json').exists()
    assert json.loads((run_tokenizer / 'tokenizer.json').read_text())['kind'] == 'huggingface'


def test_a_corrupt_saved_pipeline_is_refused_by_name(loaded, tmp_path):
  loaded['gpt2'][0].save(str(tmp_path))
  path = tmp_path / 'hf_tokenizer.json'
  path.write_text(path.read_text()[:-100])
  with pytest.raises(errors.InputError, match=r'hf_tokenizer\.json.*sha256'):
    tokenizers.load_tokenizer(str(tmp_path))
  path.unlink()
  with pytest.raises(errors.MissingError, match=r'hf_tokenizer\.json'):
    tokenizers.load_tokenizer(str(tmp_path))


def test_a_directory_without_tokenizer_files_is_refused_by_name(tmp_path):
  (tmp_path / 'config.json').write_text('{"model_type": "gpt2"}')
  with pytest.raises(errors.MissingError, match=re.escape(str(tmp_path)) + r".*spiece\.model.*tokenizer\.json"):
    tokenizers.import_hf_tokenizer(str(tmp_path))


@pytest.mark.parametrize('content', ['not json {', '{"model": {"type": "NoSuchModel"}}', '[1, 2]'])
def test_an_unreadable_tokenizer_json_is_refused_by_name(hf, tmp_path, content):
  (tmp_path / 'tokenizer.json').write_text(content)
  with pytest.raises(errors.InputError, match=re.escape(str(tmp_path / 'tokenizer.json'))):
    tokenizers.import_hf_tokenizer(str(tmp_path))


@pytest.mark.parametrize('config, why', [
    ({'extra_ids': 50}, 'extra_ids 50'),
    ({'additional_special_tokens': ['<sep>']}, r"others \['<sep>'\]"),
    ({'additional_special_tokens': ['<extra_id_0>']}, '1 of the 100'),
    ({'eos_token': '<eos>'}, 'eos_token'),
    ({'tokenizer_class': 'AlbertTokenizer'}, 'AlbertTokenizer'),
    ({'added_tokens_decoder': {'0': {'content': '<pad>', 'special': True}, '5': {'content': '<sep>', 'special': True}}},
     r"tokenizer_config\.json' adds token '<sep>' as id 5"),
])
def test_t5_special_tokens_other_than_t5s_are_refused(hf_dirs, tmp_path, config, why):
  shutil.copytree(hf_dirs['t5_spiece'], tmp_path / 't5')
  _set_config(tmp_path / 't5', **config)
  with pytest.raises(errors.InputError, match=why):
    tokenizers.import_hf_tokenizer(str(tmp_path / 't5'))


def test_a_t5_tokenizer_json_that_is_not_the_spiece_model_is_refused(hf_dirs, tmp_path):
  shutil.copytree(hf_dirs['t5'], tmp_path / 't5')
  path = tmp_path / 't5' / 'tokenizer.json'
  spec = json.loads(path.read_text())
  spec['model']['vocab'][10][1] -= 1.0
  path.write_text(json.dumps(spec))
  with pytest.raises(errors.InputError, match=r'tokenizer\.json.* differs from spiece\.model .* id 10'):
    tokenizers.import_hf_tokenizer(str(tmp_path / 't5'))


def test_a_byte_fallback_spiece_model_is_refused(hf, tmp_path):
  """transformers' T5Tokenizer drops byte fallback: unseen characters become unk, not the model's byte pieces."""
  import sentencepiece as spm
  proto = _spiece(vocab_size=400, byte_fallback=True)  # The 256 byte pieces among them.
  (tmp_path / 'spiece.model').write_bytes(proto)
  _set_config(tmp_path, tokenizer_class='T5Tokenizer')
  theirs = hf.AutoTokenizer.from_pretrained(str(tmp_path))
  assert theirs('✓', add_special_tokens=False).input_ids[-1] == 2  # unk
  assert 2 not in spm.SentencePieceProcessor(model_proto=proto).encode('✓')
  with pytest.raises(errors.InputError, match='byte_fallback'):
    tokenizers.import_hf_tokenizer(str(tmp_path))


def test_a_class_whose_pipeline_the_import_does_not_know_is_refused(hf_dirs, tmp_path):
  shutil.copytree(hf_dirs['gpt2_file'], tmp_path / 'bert')
  _set_config(tmp_path / 'bert', tokenizer_class='BertTokenizerFast')
  with pytest.raises(errors.InputError, match="tokenizer_class 'BertTokenizer'"):
    tokenizers.import_hf_tokenizer(str(tmp_path / 'bert'))


def test_huggingface_is_imported_not_built():
  with pytest.raises(errors.InputError, match=r'\./run\.sh import'):
    tokenizers.make_tokenizer('huggingface', ['some text'])


def test_every_saved_kind_is_a_config_choice():
  assert set(config_lib.CHOICES['data.tokenizer']) == set(tokenizers._LOADERS)


def test_a_run_reads_its_imported_tokenizer_and_has_nothing_to_build_one_from(loaded, tmp_path):
  config = data_config(name='text_files', tokenizer='huggingface')
  with pytest.raises(errors.MissingError, match=r"data.tokenizer='huggingface'.*\./run\.sh import"):
    tokenizer_cache.get_tokenizer(config, str(tmp_path))
  loaded['llama'][0].save(str(tmp_path / tokenizer_cache.RUN_SUBDIR))
  assert tokenizer_cache.get_tokenizer(config, str(tmp_path)).to_dict() == loaded['llama'][0].to_dict()
  config.tokenizer = 'sentencepiece'
  with pytest.raises(ValueError, match="holds a 'huggingface' tokenizer"):
    tokenizer_cache.get_tokenizer(config, str(tmp_path))


_WITHOUT = '''
import sys
for name in sys.argv[2].split(','):
  sys.modules[name] = None  # import fails
from lm import tokenizers
try:
  print(tokenizers.import_hf_tokenizer(sys.argv[1]).encode('hello wörld 🙂').tolist())
except Exception as e:
  print(type(e).__name__, e)
'''


def test_the_import_needs_neither_transformers_nor_torch_and_lm_tokenizers_not_even_tokenizers(loaded, hf_dirs):
  run = lambda name, blocked: subprocess.run(
      [sys.executable, '-c', _WITHOUT, hf_dirs[name], blocked], capture_output=True, text=True, check=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.strip()
  for name in ('gpt2', 't5'):
    assert run(name, 'transformers,torch') == str(loaded[name][0].encode('hello wörld 🙂').tolist())
  assert run('t5', 'tokenizers') == str(loaded['t5'][0].encode('hello wörld 🙂').tolist())
  assert run('gpt2', 'tokenizers').startswith("MissingError A 'huggingface' tokenizer needs the `tokenizers` package")
