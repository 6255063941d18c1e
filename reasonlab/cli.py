"""``reasonlab <command> [--recipe FILE] [--key=value ...]``: parse a stage config, call the stage.

User mistakes (missing file, unknown key, wrong type, malformed data) print one line and exit 2;
set ``REASONLAB_DEBUG=1`` for the traceback.
"""
from __future__ import annotations

import importlib
import json
import os
import sys

# command -> (config class "module:attr", stage function "module:attr", help)
COMMANDS = {
    "pretrain": ("reasonlab.train.pretrain:PretrainConfig", "reasonlab.train.pretrain:pretrain",
                 "pretrain the tiny model on synthetic reasoning traces, then evaluate it"),
    "eval": ("reasonlab.eval.run:EvalConfig", "reasonlab.eval.run:evaluate",
             "sample n completions per problem, verify, write results.jsonl / summary.json / plot"),
    "sample": ("reasonlab.engine.cli_sample:SampleConfig", "reasonlab.engine.cli_sample:run_sample",
               "print completions of a checkpoint for a prompt or task problems"),
    "bench": ("reasonlab.bench.common:BenchConfig", "reasonlab.bench.common:run_bench",
              "speed benchmarks: `bench sampler`, `bench train`, `bench grpo`, `bench sft` (against transformers / TRL), `bench sandbox` [--json]"),
    "grpo": ("reasonlab.train.grpo:GRPOConfig", "reasonlab.train.grpo:grpo",
             "RL with verifiable rewards (GRPO, R1-Zero recipe, Kimi options): recipes/r1_zero_tiny.yaml"),
    "rft": ("reasonlab.train.rft:RFTConfig", "reasonlab.train.rft:rft",
            "rejection-sampling fine-tuning baseline (sample, keep the correct, SFT): recipes/rft_tiny.yaml"),
    "sft": ("reasonlab.train.sft:SFTConfig", "reasonlab.train.sft:sft",
            "supervised fine-tuning on jsonl prompt/completion or chat rows, packed: recipes/sft_tiny.yaml"),
    "distill": ("reasonlab.train.distill:DistillConfig", "reasonlab.train.distill:distill",
                "a teacher samples, the verifier keeps the correct, the student is fine-tuned on them"),
    "pipeline": ("reasonlab.pipeline:PipelineConfig", "reasonlab.pipeline:run_pipeline",
                 "the DeepSeek-R1 recipe in stages (R1-Zero, cold start, RL, rejection SFT, RL, distill): "
                 "recipes/r1_pipeline_tiny.yaml"),
    "export": ("reasonlab.models.export:ExportConfig", "reasonlab.models.export:export",
               "write a model as a clean Hugging Face directory (transformers loads it)"),
    "verifiers": ("reasonlab.verifiers.train:VerifierTrainConfig", "reasonlab.verifiers.train:train_verifiers",
                  "sample solutions, label them (verify; Monte-Carlo steps), train ORM and PRM value models"),
    "sweep": ("reasonlab.eval.sweep:SweepConfig", "reasonlab.eval.sweep:run_sweep",
              "test-time compute sweep: every search method, budget curves with CIs (needs verifiers)"),
    "report": ("reasonlab.report.build:ReportConfig", "reasonlab.report.build:build_report",
               "one self-contained HTML page about runs: `report runs/` (tables, curves, plots, traces, trees)"),
    "demo": ("reasonlab.demo:DemoConfig", "reasonlab.demo:run_demo",
             "the main job: pretrain the tiny model, verifiers, test-time sweep, GRPO, RFT, distillation; tables in runs/demo/results.md, a report in runs/demo/report.html"),
}

USAGE = "usage: reasonlab {" + "|".join(COMMANDS) + "} [--recipe FILE] [--key=value ...]"
# commands whose positional arguments fill a list setting: `reasonlab report runs/a runs/b`
POSITIONAL = {"report": "runs"}


def split_positional(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(options, positional)``: ``--key=value``, ``--key value``, ``--flag`` and recipe files
    (``*.yaml``) stay options; every other bare argument is positional.

    >>> split_positional(["runs/", "--out", "r.html", "runs/x", "--title=T"])
    (['--out', 'r.html', '--title=T'], ['runs/', 'runs/x'])
    """
    options, positional, i = [], [], 0
    while i < len(argv):
        item = argv[i]
        if item.startswith("--"):
            takes_next = "=" not in item and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            options += argv[i: i + 2] if takes_next else [item]
            i += 2 if takes_next else 1
            continue
        (options if item.endswith((".yaml", ".yml")) else positional).append(item)
        i += 1
    return options, positional


def _load(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def _help() -> str:
    lines = [USAGE, ""] + [f"  {name:<9} {info[2]}" for name, info in COMMANDS.items()]
    return "\n".join(lines + ["", "`reasonlab <command> --help` lists a command's settings with their defaults."])


def _stage_help(command: str) -> str:
    """A stage's settings: every config field with its default and comment."""
    from reasonlab.config import describe_config

    cls = _load(COMMANDS[command][0])
    head = (f"usage: reasonlab {command} [--recipe FILE] [--key=value ...]\n\n{COMMANDS[command][2]}\n\n"
            "settings (recipe keys; nested ones as --a.b=value):")
    return head + "\n" + "\n".join(describe_config(cls))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"reasonlab: unknown command '{command}'\n{USAGE}", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in rest):
        print(_stage_help(command))
        return 0
    if command == "bench" and rest and not rest[0].startswith("-"):
        rest = [f"--what={rest[0]}"] + rest[1:]
    positional: list[str] = []
    if command in POSITIONAL:
        rest, positional = split_positional(rest)
    from reasonlab.config import ConfigError, load_config, parse_overrides
    from reasonlab.io import DataError

    user_errors = (ConfigError, DataError, FileNotFoundError)
    if command != "bench":
        from reasonlab.engine.protocol import ContextTooLong
        user_errors += (ContextTooLong,)

    try:
        recipe, overrides = parse_overrides(rest)
        cfg = load_config(_load(COMMANDS[command][0]), recipe, overrides)
        if positional:
            setattr(cfg, POSITIONAL[command], list(getattr(cfg, POSITIONAL[command])) + positional)
        result = _load(COMMANDS[command][1])(cfg)
        _leave_process_group()
    except user_errors as err:
        if os.environ.get("REASONLAB_DEBUG"):
            raise
        print(f"reasonlab {command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - only out-of-memory is handled; the rest re-raises
        if not out_of_memory(err) or os.environ.get("REASONLAB_DEBUG"):
            raise
        print(f"reasonlab {command}: error: out of memory ({' '.join(str(err).split())[:200]}); "
              f"{oom_advice(command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reasonlab {command}: interrupted (artifacts so far are kept; --resume=true continues)",
              file=sys.stderr)
        return 130
    if command != "bench" and isinstance(result, dict):
        print(json.dumps(_headline(result), indent=1))
    return 0


def _leave_process_group() -> None:
    """Under torchrun: wait until every rank has finished (rank 0 writes the artifacts last), then
    leave the process group, so no rank exits while the others still use it (gloo aborts a
    process that exits with live communication threads). A no-op without a process group."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        from reasonlab.train.distributed import barrier, dist_teardown

        barrier()
        dist_teardown()


def out_of_memory(err: BaseException) -> bool:
    """A host ``MemoryError`` or torch's device out-of-memory error (torch only if imported)."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return isinstance(err, MemoryError) or (oom is not None and isinstance(err, oom))


def oom_advice(command: str) -> str:
    """What to lower after an out-of-memory error in ``command``: the training stages' own
    settings (and their memory options), else the batch settings every stage shares."""
    trained = {
        "grpo": "lower micro_batch (rows per forward/backward), prompts_per_step or max_new_tokens, or set "
                "--grad_checkpointing=true or --lora_rank=8",
        "rft": "lower batch_size (rows per optimiser step), prompts_per_round or max_new_tokens, or set "
               "--grad_checkpointing=true or --lora_rank=8",
        "pretrain": "lower batch_size or seq_len, or set --grad_checkpointing=true",
    }
    if command in trained:
        return trained[command]
    return "lower the batch settings (micro_batch, prompts_per_batch, batch_size, prompts_per_step) or max_new_tokens"


def _headline(summary: dict) -> dict:
    """The few numbers a person wants at the end of a stage."""
    metrics = summary.get("metrics") or summary.get("eval", {}).get("metrics", {})
    keys = [k for k in metrics if k.startswith(("pass@", "maj@")) and not k.endswith("_ci")]
    out = {k: summary[k] for k in ("stage", "steps", "train_seconds", "eval_seconds", "run_dir") if k in summary}
    out.update({k: round(metrics[k], 4) for k in keys})
    return out


if __name__ == "__main__":
    sys.exit(main())
