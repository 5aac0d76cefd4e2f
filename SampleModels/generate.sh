#!/usr/bin/env bash
# Regenerates every model in SampleModels/ with `basin train`, bit for bit.
# Usage: SampleModels/generate.sh [OUTPUT_DIR [PARTS]]   (default: SampleModels itself, every part)
# PARTS: "all", or a comma-separated list of mlp, gpt2-seed0, gpt2-seed1, llama-base, llama-ft-add, llama-ft-sub,
# llama-ft-mul, cnn (the fine-tunes start from the llama-base made in this run, else from the committed one).
# BASIN may name the binary to use; by default the release build is made and used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-$here}"
parts="${2:-all}"
want() { [ "$parts" = all ] || [[ ",$parts," == *",$1,"* ]]; }
if [ -z "${BASIN:-}" ]; then
  # Build output goes to stderr: errors show, and set -e stops the script on them.
  (cd "$root" && swift build -c release --product basin) >&2
  BASIN="$root/.build/release/basin"
fi
# One BLAS thread: the same sums in the same order on every machine.
export OPENBLAS_NUM_THREADS=1
data="$here/data"
mkdir -p "$out/seeds" "$out/finetune" "$out/trajectory" "$out/data" "$out/cnn"
train() { "$BASIN" train --quiet "$@"; }

if want mlp; then
# Held-out split for soups: the first 1000 training rows to fit on, the last 300 to choose ingredients by.
"$BASIN" split "$data/digits-train.safetensors" --at 1000 "$out/data/digits-fit.safetensors" "$out/data/digits-val.safetensors"

# (i) Independently trained MLPs 64-128-128-10 (ReLU), one per seed, on the full training split.
for seed in 0 1 2 3; do
  train --data "$data/digits-train.safetensors" --sizes 64,128,128,10 --optimizer adam --lr 1e-3 \
        --epochs 60 --batch 64 --seed "$seed" --out "$out/seeds/mlp-seed$seed.safetensors"
done

# (ii) A "pre-trained" base (all ten digits, but only 300 rows) and fine-tunes of it on the 1000-row fit split
#      with different hyper-parameters: the setting of model soups and task arithmetic.
train --data "$out/data/digits-fit.safetensors" --limit 300 --sizes 64,128,128,10 --optimizer adam \
      --lr 1e-3 --epochs 30 --batch 64 --seed 100 --out "$out/finetune/base.safetensors"
train --data "$out/data/digits-fit.safetensors" --init-from "$out/finetune/base.safetensors" --optimizer adam --lr 1e-3 \
      --epochs 10 --batch 64 --seed 1 --out "$out/finetune/ft-adam-lr1e-3.safetensors"
train --data "$out/data/digits-fit.safetensors" --init-from "$out/finetune/base.safetensors" --optimizer adam --lr 3e-4 \
      --epochs 20 --batch 32 --seed 2 --out "$out/finetune/ft-adam-lr3e-4.safetensors"
train --data "$out/data/digits-fit.safetensors" --init-from "$out/finetune/base.safetensors" --optimizer sgd --lr 0.05 \
      --momentum 0.9 --epochs 10 --batch 64 --seed 3 --out "$out/finetune/ft-sgd-lr5e-2.safetensors"
train --data "$out/data/digits-fit.safetensors" --init-from "$out/finetune/base.safetensors" --optimizer adam --lr 1e-3 \
      --weight-decay 1e-3 --epochs 10 --batch 128 --seed 4 --out "$out/finetune/ft-adam-wd1e-3.safetensors"

# (iii) Checkpoints along one training run (seed 10), every 10 epochs.
train --data "$data/digits-train.safetensors" --sizes 64,128,128,10 --optimizer adam --lr 1e-3 --epochs 60 --batch 64 \
      --seed 10 --checkpoint-every 10 --checkpoint-dir "$out/trajectory" --checkpoint-name mlp-seed10 \
      --out "$out/trajectory/mlp-seed10-epoch060.safetensors"
fi

# (iv) Transformers on modular arithmetic (data/modarith-*, copied from the shared reference data: rows
#      "a op b = c" with c = a op b mod 23 for op in +, -, x; the loss is on c only). Two GPT-2-style seeds
#      trained alike (for alignment), and a LLaMA-style base (GQA, RoPE, SwiGLU) stopped early, then fine-tuned
#      on one operation each (for task arithmetic and TIES). Configs: transformers/configs/*.json.
tf="$out/transformers"
cfg="$here/transformers/configs"
for seed in 0 1; do
  if want "gpt2-seed$seed"; then
    mkdir -p "$tf"
    # lr 1e-2 and 2400 steps: both seeds generalise (77% / 88% test accuracy) for about 2.5 CPU minutes each;
    # lr 3e-3 and 1200 steps memorised the training set only (21% / 12%).
    train --config "$cfg/gpt2-tiny.json" --data "$data/modarith-train.safetensors" --optimizer adamw --lr 1e-2 --beta2 0.98 \
          --weight-decay 1 --epochs 600 --decay 300 --batch 256 --seed "$seed" --out "$tf/gpt2-seed$seed"
  fi
done
if want llama-base; then
  mkdir -p "$tf"
  train --config "$cfg/llama-tiny.json" --data "$data/modarith-train.safetensors" --optimizer adamw --lr 5e-3 --beta2 0.98 \
        --weight-decay 1 --warmup 200 --epochs 100 --batch 256 --seed 0 --out "$tf/llama-base"
fi
base="$tf/llama-base"
[ -d "$base" ] || base="$here/transformers/llama-base"
for op in add:23:100 sub:24:101 mul:25:102; do
  IFS=: read -r name token seed <<< "$op"
  if want "llama-ft-$name"; then
    mkdir -p "$tf"
    train --init-from "$base" --data "$data/modarith-train.safetensors" --token-at "1=$token" --optimizer adamw --lr 1e-3 \
          --beta2 0.98 --warmup 20 --epochs 30 --batch 128 --seed "$seed" --out "$tf/llama-ft-$name"
  fi
done

# (v) A small CNN with BatchNorm (cnn/vgg.arch.json: conv 16 - BN - ReLU - conv 16 - BN - ReLU - max pool -
#      conv 32 - BN - ReLU - global average pool - linear 10, PyTorch's names), two seeds, trained from PyTorch's
#      default initialisation on digits-train reshaped to [N, 1, 8, 8].
if want cnn; then
[ "$out/cnn" -ef "$here/cnn" ] || cp "$here/cnn/vgg.arch.json" "$out/cnn/vgg.arch.json"
for seed in 0 1; do
  train --data "$data/digits-train.safetensors" --arch "$here/cnn/vgg.arch.json" --optimizer adam --lr 1e-2 \
        --epochs 5 --batch 64 --seed "$seed" --out "$out/cnn/vgg-seed$seed.safetensors"
done
fi
echo "SampleModels written to $out"
