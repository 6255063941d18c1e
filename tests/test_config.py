"""Tests for reasonlab.config: YAML recipes, overrides, coercions and error messages."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from reasonlab.config import (ConfigError, config_to_dict, load_config, parse_overrides,
                              save_config)


@dataclass
class ModelCfg:
    d_model: int = 64
    n_layers: int = 2
    dropout: float = 0.0


@dataclass
class OptimCfg:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass
class PretrainConfig:
    name: str = "tiny"
    steps: int = 100
    lr: float = 3e-4
    compile: bool = False
    seed: Optional[int] = None
    ks: list[int] = field(default_factory=lambda: [1, 4])
    tags: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    shape: tuple[int, ...] = (1, 2)
    extra: dict[str, float] = field(default_factory=dict)
    anything: Any = None
    mode: Literal["fast", "slow"] = "fast"
    out: Path = Path("runs")
    model: ModelCfg = field(default_factory=lambda: ModelCfg(d_model=32))
    optim: Optional[OptimCfg] = None


@dataclass
class NeedsTask:
    task: str
    n: int = 1

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------------------- recipes


def test_defaults_without_recipe_or_overrides():
    cfg = load_config(PretrainConfig, None, [])
    assert cfg == PretrainConfig()
    assert cfg.model.d_model == 32


def test_recipe_values_and_nested_mapping(tmp_path):
    recipe = write(tmp_path, "name: run1\nsteps: 5\nlr: 3e-4\nks: [1, 2, 8]\n"
                             "model:\n  n_layers: 4\noptim:\n  lr: 1e-2\n  betas: [0.8, 0.9]\n")
    cfg = load_config(PretrainConfig, recipe, [])
    assert (cfg.name, cfg.steps, cfg.lr, cfg.ks) == ("run1", 5, 3e-4, [1, 2, 8])
    # a partial nested mapping updates the field's default (d_model=32 from default_factory)
    assert cfg.model == ModelCfg(d_model=32, n_layers=4)
    assert cfg.optim == OptimCfg(lr=1e-2, betas=(0.8, 0.9))


def test_empty_recipe_is_defaults(tmp_path):
    assert load_config(PretrainConfig, write(tmp_path, "# nothing\n"), []) == PretrainConfig()


def test_int_for_float_ok_in_yaml(tmp_path):
    cfg = load_config(PretrainConfig, write(tmp_path, "lr: 1\n"), [])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_yaml_str_for_int_names_file_and_key(tmp_path):
    recipe = write(tmp_path, "steps: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, recipe, [])
    msg = str(err.value)
    assert recipe in msg and "'steps'" in msg and "int" in msg and "\n" not in msg


def test_yaml_nested_type_error_names_dotted_key(tmp_path):
    recipe = write(tmp_path, "model:\n  d_model: wide\n")
    with pytest.raises(ConfigError, match=r"model\.d_model"):
        load_config(PretrainConfig, recipe, [])


def test_unknown_key_suggests_close_match(tmp_path):
    recipe = write(tmp_path, "lr_max: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, recipe, [])
    msg = str(err.value)
    assert msg.startswith(f"{recipe}: unknown key 'lr_max' for PretrainConfig")
    assert "did you mean 'lr'?" in msg and "valid keys:" in msg and "steps" in msg


def test_unknown_nested_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'model.d_modle' for ModelCfg; "
                                          r"did you mean 'd_model'"):
        load_config(PretrainConfig, write(tmp_path, "model:\n  d_modle: 3\n"), [])


def test_recipe_not_found():
    with pytest.raises(ConfigError, match=r"^recipe not found: recipes/nope\.yaml$"):
        load_config(PretrainConfig, "recipes/nope.yaml", [])


def test_yaml_syntax_error_reports_file_and_line(tmp_path):
    recipe = write(tmp_path, "steps: 3\nlr: [1, 2\nname: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, recipe, [])
    assert str(err.value).startswith(f"{recipe}:")
    assert "invalid YAML" in str(err.value)
    line = int(str(err.value)[len(recipe) + 1:].split(":")[0])
    assert 2 <= line <= 4


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(PretrainConfig, write(tmp_path, "- 1\n- 2\n"), [])


def test_nested_field_given_scalar(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping of ModelCfg fields for 'model'"):
        load_config(PretrainConfig, write(tmp_path, "model: 3\n"), [])


def test_missing_required_and_post_init_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'task' for NeedsTask"):
        load_config(NeedsTask, None, [])
    assert load_config(NeedsTask, None, ["--task=gsm"]).task == "gsm"
    with pytest.raises(ConfigError, match="n must be >= 1"):
        load_config(NeedsTask, None, ["--task=gsm", "--n=0"])


# ----------------------------------------------------------------------------- overrides


@pytest.mark.parametrize("override,attr,expected", [
    ("--steps=7", "steps", 7),
    ("steps=7", "steps", 7),
    ("--steps=1e3", "steps", 1000),
    ("--steps=1_000", "steps", 1000),
    ("--lr=3e-4", "lr", 3e-4),
    ("--lr=2", "lr", 2.0),
    ("--compile=true", "compile", True),
    ("--compile=Yes", "compile", True),
    ("--compile=1", "compile", True),
    ("--compile=no", "compile", False),
    ("--compile=0", "compile", False),
    ("--compile=False", "compile", False),
    ("--name=007", "name", "007"),
    ("--name=yes", "name", "yes"),
    ("--name=a=b", "name", "a=b"),
    ("--seed=3", "seed", 3),
    ("--seed=none", "seed", None),
    ("--seed=null", "seed", None),
    ("--ks=[1,2,4]", "ks", [1, 2, 4]),
    ("--ks=1,2,4", "ks", [1, 2, 4]),
    ("--ks=8", "ks", [8]),
    ("--ks=", "ks", []),
    ("--ks=[]", "ks", []),
    ("--tags=a,b", "tags", ["a", "b"]),
    ("--tags=[x, 'y z']", "tags", ["x", "y z"]),
    ("--weights=0.5,1e-2", "weights", [0.5, 0.01]),
    ("--shape=3,4,5", "shape", (3, 4, 5)),
    ("--extra={a: 1, b: 2.5}", "extra", {"a": 1.0, "b": 2.5}),
    ("--anything=[1, two]", "anything", [1, "two"]),
    ("--mode=slow", "mode", "slow"),
    ("--out=/tmp/x", "out", Path("/tmp/x")),
    ("--model.d_model=128", "model", ModelCfg(d_model=128)),
    ("--model.dropout=0.1", "model", ModelCfg(d_model=32, dropout=0.1)),
    ("--model={n_layers: 6}", "model", ModelCfg(d_model=32, n_layers=6)),
    ("--optim.lr=0.5", "optim", OptimCfg(lr=0.5)),
    ("--optim.betas=[0.1, 0.2]", "optim", OptimCfg(betas=(0.1, 0.2))),
    ("--optim=null", "optim", None),
    ("--n-layers-ignored=1", None, None),
])
def test_override_coercions(override, attr, expected):
    if attr is None:
        with pytest.raises(ConfigError, match="unknown key 'n_layers_ignored'"):
            load_config(PretrainConfig, None, [override])
        return
    cfg = load_config(PretrainConfig, None, [override])
    value = getattr(cfg, attr)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("override,fragment", [
    ("--steps=abc", "--steps=abc: expected int for 'steps'"),
    ("--steps=1.5", "expected int for 'steps'"),
    ("--lr=fast", "--lr=fast: expected float for 'lr'"),
    ("--compile=maybe", "expected bool"),
    ("--ks=1,x", "expected int for 'ks'"),
    ("--shape=[1, a]", "expected int for 'shape'"),
    ("--optim.betas=1,2,3", "with 2 items"),
    ("--mode=medium", "one of 'fast', 'slow'"),
    ("--extra=[1]", "mapping"),
    ("--model.d_model=big", "--model.d_model=big: expected int for 'model.d_model'"),
    ("--lr.x=1", "'lr' is not a nested config"),
    ("--modle.d_model=1", "unknown key 'modle' for PretrainConfig; did you mean 'mode' or 'model'?"),
    ("--model.width=1", "unknown key 'model.width' for ModelCfg"),
    ("--steps", "overrides look like --key=value"),
    ("--=3", "overrides look like --key=value"),
])
def test_override_errors_are_one_line_and_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, None, [override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_apply_after_recipe_and_in_order(tmp_path):
    recipe = write(tmp_path, "steps: 5\nmodel:\n  n_layers: 4\n")
    cfg = load_config(PretrainConfig, recipe, ["--steps=6", "--model.d_model=16", "--steps=9"])
    assert cfg.steps == 9
    assert cfg.model == ModelCfg(d_model=16, n_layers=4)


def test_yaml_bool_and_string_checks(tmp_path):
    assert load_config(PretrainConfig, write(tmp_path, "compile: yes\n"), []).compile is True
    with pytest.raises(ConfigError, match="'compile' expected bool"):
        load_config(PretrainConfig, write(tmp_path, "compile: sometimes\n"), [])
    with pytest.raises(ConfigError, match="'name' expected str"):
        load_config(PretrainConfig, write(tmp_path, "name: [a]\n"), [])
    assert load_config(PretrainConfig, write(tmp_path, "name: 7\n"), []).name == "7"


@dataclass
class UnionCfg:
    x: Optional[float] = 1.0
    y: int | str = 0
    z: list[int] | None = None


@pytest.mark.parametrize("override,attr,expected", [
    ("--x=none", "x", None), ("--x=2.5", "x", 2.5), ("--y=3", "y", 3), ("--y=abc", "y", "abc"),
    ("--z=1,2", "z", [1, 2]), ("--z=null", "z", None),
])
def test_union_overrides(override, attr, expected):
    assert getattr(load_config(UnionCfg, None, [override]), attr) == expected


def test_parse_overrides():
    assert parse_overrides(["recipes/tiny.yaml", "--steps=5"]) == ("recipes/tiny.yaml",
                                                                    ["--steps=5"])
    assert parse_overrides(["--recipe", "r.yml", "lr=1", "--compile"]) == (
        "r.yml", ["lr=1", "--compile=true"])
    assert parse_overrides(["--config=a.yaml"]) == ("a.yaml", [])
    assert parse_overrides([]) == (None, [])
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_overrides(["stray"])
    with pytest.raises(ConfigError, match="expected a path"):
        parse_overrides(["--recipe"])


# ------------------------------------------------------------------------------ save/load


def test_config_to_dict_is_json_safe_and_nested():
    cfg = load_config(PretrainConfig, None, ["--optim.lr=0.1"])
    d = config_to_dict(cfg)
    json.dumps(d)
    assert d["model"] == {"d_model": 32, "n_layers": 2, "dropout": 0.0}
    assert d["shape"] == [1, 2] and d["out"] == "runs"
    assert d["optim"] == {"lr": 0.1, "betas": [0.9, 0.95]}


def test_save_config_round_trips(tmp_path):
    cfg = load_config(PretrainConfig, None, [
        "--steps=11", "--lr=3e-4", "--ks=1,2", "--extra={a: 0.5}", "--optim.lr=1e-5",
        "--model.n_layers=9", "--seed=4", "--anything={x: [1, 2]}", "--name=007"])
    path = save_config(cfg, tmp_path / "sub" / "config.yaml")
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]
    assert load_config(PretrainConfig, str(path), []) == cfg


def test_config_import_does_not_pull_torch():
    code = "import sys, reasonlab.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_works_with_dataclass_instances_untouched():
    cfg = load_config(PretrainConfig, None, ["--ks=3"])
    other = load_config(PretrainConfig, None, [])
    assert other.ks == [1, 4] and cfg.ks == [3]
    assert dataclasses.is_dataclass(cfg)


def test_every_shipped_recipe_loads_into_its_stage_config():
    from pathlib import Path

    from reasonlab.eval.sweep import SweepConfig
    from reasonlab.pipeline import PipelineConfig
    from reasonlab.train.distill import DistillConfig
    from reasonlab.train.grpo import GRPOConfig
    from reasonlab.train.pretrain import PretrainConfig as Pretrain
    from reasonlab.train.rft import RFTConfig
    from reasonlab.train.sft import SFTConfig
    from reasonlab.verifiers.train import VerifierTrainConfig

    stage = {"tiny": Pretrain, "countdown_tiny": Pretrain, "r1_zero_tiny": GRPOConfig,
             "r1_zero_countdown_tiny": GRPOConfig, "rft_tiny": RFTConfig, "verifiers_tiny": VerifierTrainConfig,
             "sweep_tiny": SweepConfig, "sft_tiny": SFTConfig,
             "sos_search_tiny": Pretrain, "sos_optimal_tiny": Pretrain, "notation_tiny": Pretrain,
             "r1_pipeline_tiny": PipelineConfig, "distill_tiny": DistillConfig}
    recipes = sorted(Path(__file__).resolve().parent.parent.glob("recipes/*.yaml"))
    assert {r.stem for r in recipes} == set(stage), "a new recipe needs an entry here"
    for recipe in recipes:
        cfg = load_config(stage[recipe.stem], str(recipe), [])
        assert cfg.name == recipe.stem
