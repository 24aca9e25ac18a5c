"""T5 fine-tuning: CNN / Daily Mail summarization (news article -> its highlights).

A TFDS catalogue dataset: prepare it once as ArrayRecord on a machine with network (offline, the run stops
within seconds with the command that does it), e.g.
  tfds build cnn_dailymail --data_dir=DIR --file_format=array_record
The model is `t5_pretrain.py`'s (T5 v1.1 architecture at CPU scale); start from that run's params with
`--config.init_from=runs/t5_pretrain` (its SentencePiece vocabulary comes along), or train from scratch.

Run:      ./run.sh train --config=experiments/t5_cnn_dailymail.py --workdir=runs/t5_cnn_dailymail
Hardware: an accelerator; too large for the 2-core development CPU.
Time:     not measured (the dataset cannot be downloaded on the development machine).
Expect:   not measured; the metric to read is ROUGE-1/2/L of the beam-search highlights against the references.
"""
from experiments import base
from experiments import t5_pretrain


def get_config():
  c = t5_pretrain.t5_model(base.get_config())
  c.data.update(task='seq2seq', name='cnn_dailymail', input_key='article', target_key='highlights',
                prefix='summarize: ', max_input_len=512, max_target_len=128, pack=True)
  t5_pretrain.catalogue_finetune(c, 'rouge')
  c.decode.update(max_decode_len=128)
  return c
