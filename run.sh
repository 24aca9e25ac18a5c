#!/usr/bin/env bash
# The one launcher: creates .venv on first use (pip install -e .[test]), then runs a subcommand.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

usage() {
  cat <<'USAGE'
usage: ./run.sh COMMAND [flags]

  setup                     create or update .venv (pip install -e .[test]; test, import, export and
                            `bench decode --hf_compare`: .[test,hf]; `bench ... --vs_torch`: .[test,bench])
  train  [flags]            train the default experiment (experiments/shakespeare.py) or --config=...;
                            resumes from --workdir (default runs/<experiment>) if it holds a checkpoint
  sample --workdir=DIR      print a continuation of --prompt from DIR's latest checkpoint
  eval   --workdir=DIR      score DIR's latest checkpoint on config.eval.split (loss, bits/byte, eval.metrics);
                            writes DIR/eval_<step>.json; --config.KEY=VALUE overrides the run's own config
  summarize --workdir=DIR TEXT   summary of TEXT (or stdin) by an encoder-decoder run ('summarize: ', beam 4)
  translate --workdir=DIR TEXT   translation of TEXT (or stdin) ('translate English to German: ', or --prefix=...)
  answer --workdir=DIR --question=Q --context=C   answer extracted from C ('question: Q context: C')
  data   [--config=...] [--full]   print dataset sizes, token counts, truncation and decoded rows
                            (--full: count a streamed dataset's tokens in one pass over it)
  pretokenize [--config=...] [--workers=N]
                            tokenize the data splits once into token files that later runs read
  sweep  STUDY [--launcher=local|slurm] [--print_commands] [--sweep_dir=DIR]
                            train a study's runs (experiments/studies/), skipping finished ones; results.csv
  results DIR               print a sweep directory's results.csv (status, N, D, C, losses, speed)
  sizes  [--vocab_size=N]   print every model.size: params (non-embedding, total) and FLOPs per token; the other
                            model options and the row lengths from --config (default the default experiment's)
  test   [pytest args]      run the test suite (notebooks included)
  bench  train [flags]      print tokens/s and MFU of the train step (bench/train.py)
  bench  loop [flags]       the real training loop's tokens/s against the bare step's, in turns (bench/loop.py)
  bench  train --vs_torch   our training loop's tokens/s against nanoGPT's in PyTorch, in turns (bench/vs_torch.py)
  bench  data [flags]       print the input pipeline's tokens/s against the train step's (bench/data.py)
  bench  memory [flags]     print bytes per device by model size and strategy (bench/memory.py)
  bench  accelerator        GPU: tokens/s and MFU of ~350M and ~1B models (bench/accelerator.sh wraps it)
  bench  decode [flags]     KV-cache vs recompute greedy decoding; T5-small beam search tokens/s (bench/decode.py)
  bench  decode --hf_compare   ours against transformers' generate on the same GPT-2-small / T5-small weights
  import --hf_dir=DIR --workdir=RUN   a Hugging Face GPT-2 / Llama / T5 directory (safetensors) as a run (lm/hf.py)
  export --workdir=RUN --hf_dir=DIR   a run's latest params as a directory transformers' from_pretrained loads
  cluster up|down|status    a one-node SLURM cluster on this machine (lm/cluster.py; root: installs slurm-wlm, munge)

examples:
  ./run.sh train --config=experiments/shakespeare.py --config.model.num_layers=2 --workdir=runs/x
  ./run.sh sample --workdir=runs/x --prompt="ROMEO:" --num_tokens=200 --temperature=0.8
  ./run.sh eval --workdir=runs/reverse --config.eval.split=test --config.eval.metrics="('exact_match',)"
  ./run.sh summarize --workdir=runs/t5_xsum "The full text of a news article ..."
  ./run.sh translate --workdir=runs/t5_wmt14_de_en --config.decode.num_beams=1 < text.txt
  ./run.sh answer --workdir=runs/t5_squad --question="Who wrote it?" --context="It was written by Ann."
  ./run.sh data --config.data.pack=True --config.data.tokenizer=sentencepiece --config.data.spm_vocab_size=2000
  ./run.sh sizes --vocab_size=50257 --config.data.seq_len=1024 --config.model.mlp=swiglu
  ./run.sh train --config.model.size=10m --config.model.num_layers=4 --workdir=runs/10m_shallow
  ./run.sh import --hf_dir=path/to/t5-small --workdir=runs/t5_small
  ./run.sh test -k attention
USAGE
}

setup() {
  # Extras to install (default test); each set has its own stamp, so switching between them reinstalls nothing.
  local extras="${1:-test}" stamp="$VENV/.setup.cfg.installed"
  [[ "$extras" == test ]] || stamp+=".${extras//,/+}"
  if [[ ! -x "$PY" ]]; then
    echo "creating $VENV" >&2
    python3 -m venv "$VENV"
  fi
  if [[ ! -f "$stamp" ]] || ! cmp -s "$ROOT/setup.cfg" "$stamp"; then
    "$PY" -m pip install --quiet --upgrade pip >&2
    "$PY" -m pip install --quiet -e "$ROOT[$extras]" >&2
    cp "$ROOT/setup.cfg" "$stamp"
  fi
}

# glibc malloc: keep freed large buffers mapped instead of unmapping and re-faulting them every step
# (measured on a 2-core Sapphire Rapids: 38.7 -> 26.7 ms/step on the small shape).
export MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=536870912
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  setup) setup ;;
  # lm/main.py picks the default --config and --workdir of each mode.
  train|sample|eval|summarize|translate|answer|data|pretokenize|sizes|sweep|results)
    setup; exec "$PY" -m lm.main "$cmd" "$@" ;;
  # Hugging Face import/export and the suite (its parity tests run `transformers`) take the `hf` extra too.
  import|export) setup test,hf; exec "$PY" -m lm.main "$cmd" "$@" ;;
  test) setup test,hf; cd "$ROOT"; exec "$PY" -m pytest "$@" ;;
  bench)
    extras=test  # PyTorch (the `bench` extra) only for the benchmark that runs it.
    for arg in "$@"; do
      [[ "$arg" == --vs_torch* ]] && extras=test,bench
      [[ "$arg" == --hf_compare* ]] && extras=test,hf
    done
    setup "$extras"
    what="${1:-}"; [[ $# -gt 0 ]] && shift
    [[ -f "$ROOT/bench/$what.py" ]] || { echo "unknown benchmark '$what'; have: $(cd "$ROOT/bench" && ls *.py | sed 's/\.py$//' | tr '\n' ' ')" >&2; exit 2; }
    exec "$PY" "$ROOT/bench/$what.py" "$@" ;;
  # Standard library only, so the system python3: CI brings the cluster up on a fresh clone, before .venv exists.
  cluster) exec python3 -m lm.cluster "$@" ;;
  ""|-h|--help|help) usage ;;
  *) usage >&2; echo "error: unknown command '$cmd'; the commands are listed above" >&2; exit 2 ;;
esac
