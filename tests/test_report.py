"""Report: `./run.sh data` names the counts of each split and decodes the first rows."""



from lm.data import datasets
from lm.data import pipeline
from lm.data import report

SEQ_LEN = 16


def _fields(text: str, first: str) -> list[str]:
  """The whitespace-separated fields of the report line that starts with `first`."""
  line, = [line for line in text.split('\n') if line.split()[:1] == [first]]
  return line.split()


def test_describe_names_counts_and_decodes_rows(lm_config, lm_tokenizer):
  text = report.describe(lm_config, lm_tokenizer)
  for word in ('train', 'validation', 'bytes/token', 'truncated', 'dropped',
               'inputs', 'targets'):
    assert word in text, word
  # Segment boundaries are shown in rows (the footnote's ' | ' alone would pass a bare '|' check).
  assert any(line.startswith('  targets: ') and ' | ' in line for line in text.split('\n'))
  # The counts, derived from the texts alone: packed char-level LM, one token per character plus eos per
  # document, every token but a document's first a target, nothing truncated or dropped (no text is empty).
  for split in ('train', 'validation'):
    texts = datasets.split_texts(lm_config, split)
    assert all(texts)
    size, tokens = sum(len(t.encode('utf-8')) for t in texts), sum(len(t) + 1 for t in texts)
    assert _fields(text, split) == [split, f'{len(texts):,}', f'{size:,}', f'{tokens:,}', f'{size / tokens:.3f}',
                                    f'{len(texts):,}', f'{sum(map(len, texts)):,}', '0', '0']
  # Row 0 shows the first train batch's row 0 (seed 0), each segment decoded.
  batch = next(pipeline.make_train_iterator(lm_config, lm_tokenizer, batch_size=3, seed=0))
  ids, targets = batch['decoder_segment_ids'][0], batch['decoder_target_tokens'][0]
  first = lm_tokenizer.decode(targets[ids == 1])
  assert first and any(first in t for t in datasets.split_texts(lm_config, 'train'))
  lines = text.split('\n')
  assert 'row 0' in lines
  assert lines[lines.index('row 0') + 2].startswith(f'  targets: {first!r}')


def test_a_streamed_dataset_is_counted_only_on_request(lm_config, lm_tokenizer):
  """data.streaming: the report reads no split whole; its records are counted, and with full=True (`--full`) its
  tokens too, in a pass over the records (in data.num_workers processes): the counts of the split read whole."""
  streamed = lm_config.copy_and_resolve_references()
  streamed.update(streaming=True, pack=False)
  text = report.describe(streamed, lm_tokenizer)
  for split in ('train', 'validation'):
    records = len(datasets.load_split(lm_config, split))
    assert _fields(text, split)[:3] == [split, f'{records:,}', 'records']
  whole = lm_config.copy_and_resolve_references()
  whole.update(pack=False)
  want, full = report.describe(whole, lm_tokenizer), report.describe(streamed, lm_tokenizer, full=True)
  for split in ('train', 'validation'):
    assert _fields(full, split) == _fields(want, split)
