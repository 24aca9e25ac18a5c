"""nanoGPT's GPT and training loop in PyTorch eager on CPU, float32: the baseline of `./run.sh bench train --vs_torch`.

Written for this benchmark after nanoGPT's model.py and train.py (architecture and loop, not its text):

- model: token and learned position embeddings, pre-LayerNorm blocks (LayerNorm with bias, eps 1e-5), causal
  self-attention through F.scaled_dot_product_attention (one qkv Linear, one output Linear), MLP 4x with
  nn.GELU (exact erf), final LayerNorm, head tied to the token embedding; Linear and Embedding weights
  N(0, 0.02), biases 0, each residual output projection N(0, 0.02 / sqrt(2 * n_layer)); dropout 0.
- optimizer: AdamW, weight decay on >= 2-D params only (embeddings included, as nanoGPT does), `fused=True`
  (nanoGPT asks for it on CUDA only; PyTorch's CPU build has it too, and it is the faster one), clipping of the
  global grad norm, nanoGPT's get_lr (linear warmup, cosine to min_lr at lr_decay_iters, then min_lr).
- data: nanoGPT's get_batch: a fresh np.memmap of a uint16 token file per batch, `batch_size` random windows
  of block_size + 1 tokens (torch.randint), int64 tensors.
- loop: set lr, forward, fetch the next batch, backward, clip, step, zero_grad(set_to_none=True).
- eval: the mean loss of fixed validation rows (rows i: tokens [i*T, i*T + T] of the val file), no grad.

torch.set_num_threads is set to the CPUs this process may run on (os.sched_getaffinity), which for PyTorch's
CPU build is also its default on a machine without SMT.

It runs as a worker that bench/train.py starts and drives over pipes, one JSON object per line each way:

    python bench/torch_gpt.py --serve
    -> {"init": {n_layer, n_head, n_embd, block_size, batch_size, vocab_size, train_bin, val_bin, lr,
                 min_lr, warmup_iters, lr_decay_iters, beta1, beta2, weight_decay, grad_clip, seed}}
    <- {"threads": 2, "params": 808064, "fused": true, "torch": "2.13.0+cpu"}
    -> {"train": STEPS}    <- {"seconds": S, "step": N, "loss": L}   STEPS steps, data fetch included
    -> {"eval": null}      <- {"loss": L, "seconds": S}
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):

  def __init__(self, n_embd, n_head):
    super().__init__()
    self.n_head = n_head
    self.qkv = nn.Linear(n_embd, 3 * n_embd)
    self.c_proj = nn.Linear(n_embd, n_embd)

  def forward(self, x):
    batch, length, width = x.shape
    q, k, v = (t.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)
               for t in self.qkv(x).split(width, dim=2))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return self.c_proj(y.transpose(1, 2).contiguous().view(batch, length, width))


class Block(nn.Module):

  def __init__(self, n_embd, n_head):
    super().__init__()
    self.ln_1 = nn.LayerNorm(n_embd, eps=1e-5)
    self.attn = CausalSelfAttention(n_embd, n_head)
    self.ln_2 = nn.LayerNorm(n_embd, eps=1e-5)
    self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
    self.mlp[2].is_residual_proj = True
    self.attn.c_proj.is_residual_proj = True

  def forward(self, x):
    x = x + self.attn(self.ln_1(x))
    return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):

  def __init__(self, *, n_layer, n_head, n_embd, block_size, vocab_size):
    super().__init__()
    self.wte = nn.Embedding(vocab_size, n_embd)
    self.wpe = nn.Embedding(block_size, n_embd)
    self.blocks = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
    self.ln_f = nn.LayerNorm(n_embd, eps=1e-5)
    self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
    self.lm_head.weight = self.wte.weight  # Tied.
    for module in self.modules():
      if isinstance(module, (nn.Linear, nn.Embedding)):
        std = 0.02 / math.sqrt(2 * n_layer) if getattr(module, 'is_residual_proj', False) else 0.02
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, 'bias', None) is not None:
          nn.init.zeros_(module.bias)

  def forward(self, idx, targets):
    positions = torch.arange(idx.shape[1], dtype=torch.long)
    x = self.wte(idx) + self.wpe(positions)
    for block in self.blocks:
      x = block(x)
    logits = self.lm_head(self.ln_f(x))
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def make_optimizer(model, *, lr, beta1, beta2, weight_decay):
  """AdamW, decaying >= 2-D params only; fused if this build has it, else PyTorch's default (foreach)."""
  params = [p for p in model.parameters() if p.requires_grad]  # Tied weights appear once.
  groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': weight_decay},
            {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
  try:
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), fused=True), True
  except (RuntimeError, TypeError, ValueError):
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2)), False


def nanogpt_lr(it, *, lr, min_lr, warmup_iters, lr_decay_iters):
  """nanoGPT's schedule: linear warmup, cosine decay to min_lr at lr_decay_iters, then min_lr."""
  if it < warmup_iters:
    return lr * (it + 1) / (warmup_iters + 1)
  if it > lr_decay_iters:
    return min_lr
  ratio = (it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1)
  return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


class Trainer:
  """The model, optimizer and data of one run; `train(steps)` and `evaluate()` are the loop's two parts."""

  def __init__(self, *, n_layer, n_head, n_embd, block_size, batch_size, vocab_size, train_bin, val_bin, lr,
               min_lr, warmup_iters, lr_decay_iters, beta1, beta2, weight_decay, grad_clip, seed):
    self.threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(self.threads)
    torch.manual_seed(seed)
    self.block_size, self.batch_size, self.train_bin, self.grad_clip = block_size, batch_size, train_bin, grad_clip
    self.schedule = dict(lr=lr, min_lr=min_lr, warmup_iters=warmup_iters, lr_decay_iters=lr_decay_iters)
    self.model = GPT(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, vocab_size=vocab_size)
    self.optimizer, self.fused = make_optimizer(self.model, lr=lr, beta1=beta1, beta2=beta2,
                                                weight_decay=weight_decay)
    val = np.fromfile(val_bin, dtype=np.uint16).astype(np.int64)
    rows = (len(val) - 1) // block_size
    self.val = [(torch.from_numpy(val[i * block_size:(i + 1) * block_size]),
                 torch.from_numpy(val[i * block_size + 1:(i + 1) * block_size + 1])) for i in range(rows)]
    self.step = 0
    self.batch = self.get_batch()

  def get_batch(self):
    data = np.memmap(self.train_bin, dtype=np.uint16, mode='r')  # Afresh each batch, as nanoGPT does.
    ix = torch.randint(len(data) - self.block_size, (self.batch_size,))
    x = torch.stack([torch.from_numpy(data[i:i + self.block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + self.block_size].astype(np.int64)) for i in ix])
    return x, y

  def train(self, steps):
    """Runs `steps` optimizer steps; returns (seconds, the last loss)."""
    self.model.train()
    start = time.perf_counter()
    for _ in range(steps):
      lr = nanogpt_lr(self.step, **self.schedule)
      for group in self.optimizer.param_groups:
        group['lr'] = lr
      loss = self.model(*self.batch)
      self.batch = self.get_batch()
      loss.backward()
      if self.grad_clip:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
      self.step += 1
    last = loss.item()
    return time.perf_counter() - start, last

  @torch.no_grad()
  def evaluate(self):
    """(mean loss of the validation rows in batches of batch_size, seconds)."""
    self.model.eval()
    start = time.perf_counter()
    losses = []
    for i in range(0, len(self.val), self.batch_size):
      rows = self.val[i:i + self.batch_size]
      x, y = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
      losses.append(self.model(x, y).item() * len(rows))
    return sum(losses) / len(self.val), time.perf_counter() - start


def serve(commands, replies):
  """Answers one JSON line per command line (module docstring) until `commands` ends."""
  trainer = None
  for line in commands:
    command = json.loads(line)
    if 'init' in command:
      trainer = Trainer(**command['init'])
      reply = {'threads': trainer.threads, 'fused': trainer.fused, 'torch': torch.__version__,
               'params': sum(p.numel() for p in trainer.model.parameters())}
    elif 'train' in command:
      seconds, loss = trainer.train(command['train'])
      reply = {'seconds': seconds, 'step': trainer.step, 'loss': loss}
    elif 'eval' in command:
      loss, seconds = trainer.evaluate()
      reply = {'loss': loss, 'seconds': seconds}
    else:
      raise ValueError(f'unknown command {command!r}')
    replies.write(json.dumps(reply) + '\n')
    replies.flush()


if __name__ == '__main__':
  if sys.argv[1:] != ['--serve']:
    sys.exit(f'usage: {sys.argv[0]} --serve (a worker of bench/train.py --vs_torch; see its docstring)')
  replies = os.fdopen(os.dup(sys.stdout.fileno()), 'w')
  sys.stdout = sys.stderr  # Anything else printed goes to stderr, never into the replies.
  serve(sys.stdin, replies)
