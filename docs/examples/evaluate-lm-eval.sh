#!/bin/sh
# An external evaluator for `basin merge --evaluate` and `basin soup --evaluate`: scores one candidate model folder
# with EleutherAI's lm-evaluation-harness and prints one JSON object of metrics, as Basin's contract asks:
#
#   basin soup a/ b/ c/ --greedy --metric hellaswag.acc_norm \
#       --evaluate 'sh docs/examples/evaluate-lm-eval.sh' --evaluate-jobs 2 --out soup/
#
# Basin appends the candidate's folder (config.json, model.safetensors or shards, tokenizer) as the last argument.
# Standard output must hold only the JSON object; everything else goes to standard error. A non-zero exit marks the
# candidate as failed (Basin shows this script's standard error).
#
# Where the work runs (environment variables):
#   BASIN_EVAL_TASKS   lm-eval tasks, comma-separated (default: hellaswag,arc_easy)
#   BASIN_EVAL_ARGS    extra lm-eval arguments (default: --batch_size auto)
#   LM_EVAL            the lm_eval executable (default: lm_eval)
#   BASIN_EVAL_HOST    run on a GPU machine over ssh: the candidate is copied there with rsync first
#                      (BASIN_EVAL_REMOTE_DIR, default /tmp/basin-candidates, holds it; removed afterwards)
#   BASIN_EVAL_SLURM   set to 1 to submit the evaluation to Slurm and wait for it (sbatch --wait);
#                      BASIN_EVAL_SBATCH_ARGS passes options such as "--gres=gpu:1 --time=01:00:00"
set -eu

candidate=${1:?usage: evaluate-lm-eval.sh MODEL_FOLDER}
tasks=${BASIN_EVAL_TASKS:-hellaswag,arc_easy}
extra=${BASIN_EVAL_ARGS:---batch_size auto}
lm_eval=${LM_EVAL:-lm_eval}
results=$(mktemp -d "${TMPDIR:-/tmp}/basin-lm-eval.XXXXXX")
trap 'rm -rf "$results"' EXIT

# The lm-eval command line for a model folder and an output folder.
command_for() {
    echo "$lm_eval --model hf --model_args pretrained=$1 --tasks $tasks $extra --output_path $2"
}

if [ -n "${BASIN_EVAL_HOST:-}" ]; then
    remote_dir=${BASIN_EVAL_REMOTE_DIR:-/tmp/basin-candidates}/$(basename "$candidate")-$$
    echo "copying $candidate to $BASIN_EVAL_HOST:$remote_dir" >&2
    ssh "$BASIN_EVAL_HOST" "mkdir -p '$remote_dir'" >&2
    rsync -a "$candidate/" "$BASIN_EVAL_HOST:$remote_dir/" >&2
    ssh "$BASIN_EVAL_HOST" "$(command_for "$remote_dir" "$remote_dir.results") >&2 && tar -C '$remote_dir.results' -cf - ." \
        | tar -C "$results" -xf -
    ssh "$BASIN_EVAL_HOST" "rm -rf '$remote_dir' '$remote_dir.results'" >&2 || true
elif [ "${BASIN_EVAL_SLURM:-0}" = 1 ]; then
    # The job writes into $results, which must be on a file system the compute node shares (e.g. set TMPDIR to one).
    echo "submitting to Slurm" >&2
    # shellcheck disable=SC2086
    sbatch --wait ${BASIN_EVAL_SBATCH_ARGS:-} --output "$results/slurm.log" \
        --wrap "$(command_for "$candidate" "$results")" >&2 || { cat "$results/slurm.log" >&2; exit 1; }
else
    # shellcheck disable=SC2086
    "$lm_eval" --model hf --model_args "pretrained=$candidate" --tasks "$tasks" $extra --output_path "$results" >&2
fi

# lm-eval writes OUTPUT/<model>/results_<time>.json: {"results": {"task": {"acc,none": 0.5, "acc_stderr,none": ...}}}.
file=$(find "$results" -name 'results_*.json' | sort | tail -n 1)
[ -n "$file" ] || { echo "lm-eval wrote no results_*.json" >&2; exit 1; }
python3 - "$file" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
metrics = {}
for task, values in results.items():
    for key, value in values.items():
        name = key.split(",")[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not name.endswith("_stderr"):
            metrics[f"{task}.{name}"] = value
print(json.dumps(metrics, sort_keys=True))
PY
