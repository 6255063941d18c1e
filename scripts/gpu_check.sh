#!/usr/bin/env bash
# One-shot GPU check: builds a Qwen2.5-0.5B-shaped random model (models.random_models, nothing
# downloaded), then runs on the device
#   1. `bench sampler`: our engine vs transformers generate (+ static cache) and our decode-step
#      time, PROMPTS x NEW_TOKENS (256 x 256) in DTYPE (bf16);
#   2. `bench grpo`: our GRPO step in this process, GRPO_PROMPTS x GROUP_SIZE x GRPO_TOKENS (64 x 8 x 256);
#   3. a short `reasonlab grpo` run (RUN_STEPS steps, local backend) when GRPOConfig has a
#      `device` field (on the CPU it always runs).
# Prompts: GSM8K questions from DATA (../shared/data/gsm8k/test.jsonl from the repository root)
# if that file exists, else synthetic arith problems (../shared does not travel to a device
# machine: copy a slice of test.jsonl into a git-ignored path of the checkout and set DATA).
# Everything but the last line goes to stderr; stdout gets exactly one JSON line of figures
# ("ok": true and exit status 0 when every section ran; a failed section reports its error).
# Each section has a time limit, within a total BUDGET_S (450 s: under 8 minutes on an H200).
#
# CPU smoke test (well under a minute):
#   DEVICE=cpu PRESET=qwen2-tiny PROMPTS=8 NEW_TOKENS=16 ./scripts/gpu_check.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEVICE="${DEVICE:-cuda}"
PRESET="${PRESET:-qwen2.5-0.5b}"
DTYPE="${DTYPE:-bfloat16}"
PROMPTS="${PROMPTS:-256}"
NEW_TOKENS="${NEW_TOKENS:-256}"
REPEATS="${REPEATS:-2}"
STATIC_COMPILE="${STATIC_COMPILE:-true}"   # false: transformers' static-cache generate without torch.compile
DECODE_ROWS="${DECODE_ROWS:-$PROMPTS}"
clamp() { local v=$1; ((v < $2)) && v=$2; ((v > $3)) && v=$3; echo "$v"; }   # clamp VALUE LOW HIGH
GRPO_PROMPTS="${GRPO_PROMPTS:-$(clamp $((PROMPTS / 4)) 1 64)}"          # 256 prompts -> 64
GROUP_SIZE="${GROUP_SIZE:-8}"
GRPO_TOKENS="${GRPO_TOKENS:-$NEW_TOKENS}"
RUN_STEPS="${RUN_STEPS:-3}"
RUN_PROMPTS="${RUN_PROMPTS:-$(clamp $((PROMPTS / 16)) 1 16)}"          # 256 prompts -> 16
DATA="${DATA:-../shared/data/gsm8k/test.jsonl}"
BUDGET_S="${BUDGET_S:-450}"
PYTHON="${PYTHON:-python3}"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

log() { echo "== gpu_check: $*" >&2; }

# run_section NAME LIMIT_S CMD...: stdout -> $WORK/NAME.stdout, stderr shown and kept in
# $WORK/NAME.stderr, "rc seconds" -> $WORK/NAME.rc; never fails (the summary reports it).
run_section() {
  local name="$1" limit="$2" left rc=0 t0=$SECONDS
  shift 2
  left=$((BUDGET_S - (SECONDS - START)))
  if ((left < 15)); then
    echo "skipped: the ${BUDGET_S}s budget is spent" >"$WORK/$name.skip"
    log "$name skipped (budget spent)"
    return 0
  fi
  ((limit < left)) || limit=$left
  log "$name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.stdout" 2> >(tee "$WORK/$name.stderr" >&2) || rc=$?
  echo "$rc $((SECONDS - t0))" >"$WORK/$name.rc"
  ((rc == 0)) || log "$name failed (exit $rc)"
  return 0
}

has_grpo_device() {
  "$PYTHON" -c "import dataclasses, sys; from reasonlab.train.grpo import GRPOConfig; \
sys.exit(0 if 'device' in {f.name for f in dataclasses.fields(GRPOConfig)} else 1)" 2>/dev/null
}

MODEL="$WORK/model"
PROMPT_ARGS=()
SOURCE="arith (synthetic)"
if [[ -f "$DATA" ]]; then
  PROMPT_ARGS=(--task=gsm8k "--data_path=$DATA")
  SOURCE="gsm8k:$DATA"
fi
log "device=$DEVICE preset=$PRESET dtype=$DTYPE prompts=$SOURCE work=$WORK"

run_section build 120 "$PYTHON" -m reasonlab.models.random_models --preset "$PRESET" --out "$MODEL"
if [[ -f "$MODEL/config.json" ]]; then
  COMMON=(--json "--model=$MODEL" "--device=$DEVICE" --in_process=true "--dtype=$DTYPE")
  run_section sampler 200 "$PYTHON" -m reasonlab.cli bench sampler "${COMMON[@]}" --extras=true \
    "--static_compile=$STATIC_COMPILE" \
    "${PROMPT_ARGS[@]}" "--prompts=$PROMPTS" "--new_tokens=$NEW_TOKENS" "--decode_rows=$DECODE_ROWS" \
    "--repeats=$REPEATS"
  run_section grpo_bench 150 "$PYTHON" -m reasonlab.cli bench grpo "${COMMON[@]}" --trl=false \
    "--prompts=$GRPO_PROMPTS" "--n=$GROUP_SIZE" "--new_tokens=$GRPO_TOKENS" --steps=1 --repeats=1
  RUN=("$PYTHON" -m reasonlab.cli grpo "--model=$MODEL" --task=arith --backend=local "--steps=$RUN_STEPS"
       "--prompts_per_step=$RUN_PROMPTS" "--group_size=$GROUP_SIZE" "--max_new_tokens=$GRPO_TOKENS"
       "--sampler_dtype=$DTYPE" --preflight=false --eval_every=0 --eval_problems=1 --final_eval=false
       --train_pool=2000 "--ckpt_every=$RUN_STEPS" "--runs_dir=$WORK/runs" --name=gpu_check)
  if has_grpo_device; then
    run_section grpo_run 90 "${RUN[@]}" "--device=$DEVICE"
  elif [[ "$DEVICE" == cpu ]]; then
    run_section grpo_run 90 "${RUN[@]}"
  else
    echo "skipped: GRPOConfig has no device field in this checkout (grpo_bench ran our GRPO step on $DEVICE)" \
      >"$WORK/grpo_run.skip"
  fi
fi

WORK="$WORK" DEVICE="$DEVICE" PRESET="$PRESET" DTYPE="$DTYPE" SOURCE="$SOURCE" WALL=$((SECONDS - START)) \
  "$PYTHON" - <<'EOF'
"""Gather the sections into one JSON line on stdout."""
import json
import os
import statistics
from pathlib import Path

work = Path(os.environ["WORK"])


def last_json(text: str):
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("{")]
    return json.loads(lines[-1]) if lines else None


def section(name: str, parse: bool = True) -> dict:
    """The section's JSON (``parse``: its last stdout line), or why there is none."""
    if (work / f"{name}.skip").exists():
        return {"skipped": (work / f"{name}.skip").read_text().strip()}
    if not (work / f"{name}.rc").exists():
        return {"skipped": "not run (the model was not built)"}
    rc, secs = (int(v) for v in (work / f"{name}.rc").read_text().split())
    if rc != 0:
        err = work / f"{name}.stderr"
        tail = " ".join(err.read_text()[-400:].split()) if err.exists() else ""
        return {"error": "timed out" if rc in (124, 137) else f"exit {rc}", "stderr_tail": tail, "wall_s": secs}
    if not parse:
        return {"wall_s": secs}
    try:
        out = last_json((work / f"{name}.stdout").read_text()) or {}
    except json.JSONDecodeError as err:
        return {"error": f"unreadable output: {err}", "wall_s": secs}
    return {**out, "wall_s": secs}


def grpo_run() -> dict:
    """Medians of the run's metrics over its steps after the first (a warm-up)."""
    out = section("grpo_run", parse=False)
    log = work / "runs" / "gpu_check" / "metrics.jsonl"
    if set(out) == {"wall_s"} and log.exists():
        rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        timed = rows[1:] or rows
        out = {"steps": len(rows), "wall_s": out["wall_s"], "device": os.environ["DEVICE"],
               **{f"median_{k}": round(statistics.median(r[k] for r in timed), 3)
                  for k in ("step_s", "rollout_s", "update_s", "completions_per_s", "tokens_per_s")
                  if all(k in r for r in timed)}}
    return out


def environment(sampler: dict) -> dict:
    """Package versions (without importing them) and the GPU the sampler bench saw."""
    from importlib.metadata import version

    env = {"torch": version("torch"), "transformers": version("transformers")}
    return {**env, "gpu": sampler["gpu"]} if "gpu" in sampler else env


build, sampler = section("build"), section("sampler")
result = {"check": "gpu_check", "device": os.environ["DEVICE"], "preset": os.environ["PRESET"],
          "params": build.get("params"), "dtype": os.environ["DTYPE"], "prompts_source": os.environ["SOURCE"],
          **environment(sampler), "build": build, "sampler": sampler, "grpo_bench": section("grpo_bench"),
          "grpo_run": grpo_run(), "wall_s": int(os.environ["WALL"])}
required = ("build", "sampler", "grpo_bench")          # grpo_run may be skipped (no device field)
result["ok"] = all("error" not in result[k] and "skipped" not in result[k] for k in required) \
    and "error" not in result["grpo_run"]
print(json.dumps(result))
Path(work / "ok").write_text("1" if result["ok"] else "0")
EOF
[[ "$(cat "$WORK/ok" 2>/dev/null)" == 1 ]]
