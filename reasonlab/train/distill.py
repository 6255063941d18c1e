"""Stage: distillation. A teacher samples ``samples_per_prompt`` solutions per problem, the task
verifier keeps the correct ones (all, or the shortest with ``selector: shortest``), and the
student is fine-tuned on them (completion tokens only).

This is rejection-sampling fine-tuning (``train.rft``) with the sampler's model fixed to the
teacher: the same sampling, verification, de-duplication, SFT step, torchrun and device options,
and the same artifacts. Defaults differ: one round over a larger set of problems. The teacher
must share the student's tokenizer (the student learns the teacher's token ids).

DeepSeek-R1 distils its reasoning model into smaller Qwen / Llama students this way (plain SFT on
~800k curated samples, no RL on the student); their Table 6 compares that with RL on the same
student at equal student compute.
"""
from __future__ import annotations

from dataclasses import dataclass

from reasonlab.train.rft import RFTConfig, rft


@dataclass
class DistillConfig(RFTConfig):
    name: str = "distill"            # run directory: runs_dir/name
    teacher: str = ""                # the model that writes the solutions (required)
    rounds: int = 1                  # passes of sample -> keep -> SFT (the teacher never changes)
    prompts_per_round: int = 2048    # problems the teacher solves per round
    epochs: int = 2                  # SFT passes over each round's kept solutions
    eval_every: int = 0              # held-out pass@1 / maj@k every K rounds (0: off)


def distill(cfg: DistillConfig, progress: bool = True) -> dict:
    """Run the stage; returns the summary (also ``summary.json``)."""
    from reasonlab.config import ConfigError

    if not cfg.teacher:
        raise ConfigError("teacher: distillation needs --teacher=<model directory> (the student is --model)")
    return rft(cfg, progress=progress)
