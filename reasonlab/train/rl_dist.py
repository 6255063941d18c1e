"""Data parallel GRPO and RFT under ``torchrun`` (``train.distributed``): the pieces ``train.grpo``
and ``train.rft`` call. On a single process every function here is the plain call it wraps.

Every rank holds the same global picture of a step: the prompts drawn (same seed), the buffer of
unfinished groups, the scored groups and their rewards, the prompt statistics. So every decision
(refills, curriculum, which groups train, when to stop) comes out the same on every rank without
being sent. The work is split by whole groups (a group never spans two ranks):

- sampling: each rank continues its block of the buffer's groups and starts its block of the new
  prompts with its own sampler backend (and its own workers); the sampler keys are the rows'
  positions in the step's global lists, so a prompt draws the same completions on any rank as on
  one process; the groups are then gathered, in the order one process would hold them;
- scoring: each rank scores its block of the finished groups (the verifier's work); the scores
  are gathered;
- the update: each rank trains on its block of the kept groups, weighted as rows of the global
  batch, and gradients are averaged before clipping (``policy_update.update``), so every rank
  applies the same step and the weights never travel.

Rank 0 writes every file (run directory, metrics, checkpoints, plots, summary) and runs the
held-out evaluations while the others wait at a barrier.
"""
from __future__ import annotations

import os
from pathlib import Path

from reasonlab.train.distributed import (
    agree,
    all_gather_objects,
    barrier,
    block_slice,
    is_dist,
    is_main,
    world_size,
)
from reasonlab.train.rollout import Group, batch_tensors, generate, worker_count


def launch_world() -> int:
    """Processes this launch runs (torchrun's ``WORLD_SIZE``; 1 without torchrun), readable
    before the process group is joined, so configs are checked first."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_divisible(n: int, key: str) -> None:
    """One-line ConfigError unless ``n`` prompts split evenly over the launch's processes."""
    from reasonlab.config import ConfigError

    world = launch_world()
    if n % world:
        raise ConfigError(f"{key}: {n} prompts do not split evenly over {world} processes "
                          f"(torchrun --nproc_per_node); use a multiple of {world}")


def world_facts() -> dict:
    """Fingerprint facts of the launch: ``world_size`` under torchrun (a single process records
    nothing, so its run.json is as before)."""
    world = world_size()
    return {"world_size": world} if world > 1 else {}


def rank_workers(backend: str, workers: int) -> int:
    """Sampler processes of this rank: ``workers``, or with 0 (one per core) this node's cores
    shared among its ranks."""
    if workers or backend != "parallel" or not is_dist():
        return worker_count(backend, workers)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    return max(1, (os.cpu_count() or 1) // per_node)


def open_run_on_main(cfg, fp: dict) -> Path:
    """``runs.open_stage_run`` on rank 0; every rank gets the directory or rank 0's ConfigError."""
    from reasonlab.config import ConfigError
    from reasonlab.runs import open_stage_run

    if not is_dist():
        return open_stage_run(cfg, fp)
    error = None
    if is_main():
        try:
            open_stage_run(cfg, fp)
        except ConfigError as err:
            error = str(err)
    error = agree(error)
    if error is not None:
        raise ConfigError(error)
    return Path(cfg.runs_dir) / cfg.name


def main_only(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 (its result; None on the others, who wait for it)."""
    out = fn(*args, **kwargs) if is_main() else None
    barrier()
    return out


# ---- GRPO ------------------------------------------------------------------------------------

def generate_sharded(sample_fn, buffer: list[Group], new: list[tuple[int, list[int]]], g: int, scfg,
                     max_tokens: int) -> tuple[list[Group], list[Group], int]:
    """``rollout.generate`` over the ranks: ``buffer`` and ``new`` are the same on every rank; each
    samples its block of both, and every rank gets all finished and unfinished groups (in one
    process's order) and the global token count. Keys: positions in the global lists."""
    if not is_dist():
        return generate(sample_fn, buffer, new, g, scfg, max_tokens, key_offsets=(0, 0))
    mine_b, mine_n = block_slice(len(buffer)), block_slice(len(new))
    rows_before = sum(r.finish is None for grp in buffer[: mine_b.start] for r in grp.rows)
    my_buffer = buffer[mine_b]
    done, pending, n_tok = generate(sample_fn, my_buffer, new[mine_n], g, scfg, max_tokens,
                                    key_offsets=(mine_n.start, rows_before))
    ours = {id(x) for x in my_buffer}
    fresh = {x.index: x for x in done + pending if id(x) not in ours}     # indices of a draw are distinct
    parts = all_gather_objects((my_buffer, [fresh[i] for i, _ in new[mine_n]], n_tok))
    groups = [x for part in parts for x in part[0]] + [x for part in parts for x in part[1]]
    return [x for x in groups if x.done], [x for x in groups if not x.done], sum(part[2] for part in parts)


def map_sharded(fn, items: list) -> list:
    """``[fn(x) for x in items]`` with each rank computing its block (results gathered)."""
    mine = [fn(x) for x in items[block_slice(len(items))]]
    return [y for part in all_gather_objects(mine) for y in part] if is_dist() else mine


def local_batch(groups: list[Group], adv, pad_id: int, pad_to: int) -> dict | None:
    """``batch_tensors`` of this rank's block of the step's groups (all of them on one process);
    None when the block is empty (the rank still joins the update's collectives)."""
    sl = block_slice(len(groups))
    if sl.stop == sl.start:
        return None
    return batch_tensors(groups[sl], adv[sl], pad_id, pad_to)
