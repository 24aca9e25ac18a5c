"""T5 fine-tuning: SQuAD v1.1 question answering in T5's text-to-text form, 'question: ... context: ...' -> the
first answer.

A TFDS catalogue dataset: prepare it once as ArrayRecord on a machine with network (offline, the run stops
within seconds with the command that does it), e.g.
  tfds build squad --data_dir=DIR --file_format=array_record
The model is `t5_pretrain.py`'s (T5 v1.1 architecture at CPU scale); start from that run's params with
`--config.init_from=runs/t5_pretrain` (its SentencePiece vocabulary comes along), or train from scratch.

Run:      ./run.sh train --config=experiments/t5_squad.py --workdir=runs/t5_squad
Hardware: an accelerator; too large for the 2-core development CPU.
Time:     not measured (the dataset cannot be downloaded on the development machine).
Expect:   not measured; the metric to read is exact match of the greedy answer with the first reference answer.
"""
from experiments import base
from experiments import t5_pretrain


def get_config():
  c = t5_pretrain.t5_model(base.get_config())
  c.data.update(task='seq2seq', name='squad', input_key='question: {question} context: {context}',
                target_key='answers/text', max_input_len=512, max_target_len=32, pack=True)
  t5_pretrain.catalogue_finetune(c, 'exact_match')
  c.decode.update(num_beams=1, max_decode_len=32)
  return c
