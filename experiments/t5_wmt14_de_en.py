"""T5 fine-tuning: WMT'14 German -> English translation.

A TFDS catalogue dataset: prepare it once as ArrayRecord on a machine with network (offline, the run stops
within seconds with the command that does it), e.g.
  tfds build wmt14_translate/de-en --data_dir=DIR --file_format=array_record
The model is `t5_pretrain.py`'s (T5 v1.1 architecture at CPU scale); start from that run's params with
`--config.init_from=runs/t5_pretrain` (its SentencePiece vocabulary comes along), or train from scratch.

Run:      ./run.sh train --config=experiments/t5_wmt14_de_en.py --workdir=runs/t5_wmt14_de_en
Hardware: an accelerator; too large for the 2-core development CPU.
Time:     not measured (the dataset cannot be downloaded on the development machine).
Expect:   not measured; the metric to read is sacreBLEU of the beam-search translations of newstest2013
          (the validation split).
"""
from experiments import base
from experiments import t5_pretrain


def get_config():
  c = t5_pretrain.t5_model(base.get_config())
  c.data.update(task='seq2seq', name='wmt14_translate/de-en', input_key='de', target_key='en',
                prefix='translate German to English: ', max_input_len=256, max_target_len=256, pack=True)
  t5_pretrain.catalogue_finetune(c, 'bleu')
  c.decode.update(max_decode_len=256, max_input_len=256)
  return c
