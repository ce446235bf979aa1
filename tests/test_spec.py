"""RunSpec validation: shapes, component options via their plugins, overrides, schema."""

from __future__ import annotations

import copy

import pytest
import yaml

from tinyllava.spec import SpecError, load_spec, resolve_spec
from tinyllava.spec.overrides import apply_overrides
from tinyllava.spec.schema import run_spec_schema
from tinyllava.testing import tiny_run_spec


@pytest.fixture
def raw(tmp_path):
    return tiny_run_spec(tmp_path / "runs")


def problems(raw, overrides=None) -> str:
    with pytest.raises(SpecError) as err:
        resolve_spec(raw, overrides)
    return str(err.value)


def test_good_spec_fills_component_defaults(raw):
    spec = resolve_spec(raw)
    assert spec.model.connector.options == {"depth": 2, "position_embedding": "none"}
    assert spec.model.vision_tower.options["feature_layer"] == -2  # the tower's own default, filled in
    assert spec.stages[1].tune.llm == "full"


def test_unknown_top_level_field(raw):
    raw["outptu_dir"] = "x"
    assert "outptu_dir: unknown field" in problems(raw)


def test_unknown_component_names_installed_and_closest(raw):
    raw["model"]["connector"] = {"name": "mpl"}
    msg = problems(raw)
    assert "model.connector.name" in msg
    assert "did you mean 'mlp'" in msg
    assert "Installed connector components: " in msg and "mlp" in msg.split("Installed connector components: ")[1]


def test_wrong_type_names_path_and_value(raw):
    raw["stages"][0]["batch_size"] = "lots"
    msg = problems(raw)
    assert "stages.0.batch_size" in msg and "'lots'" in msg


def test_plugin_option_is_validated_by_the_plugin(raw):
    raw["model"]["connector"]["depth"] = 0
    msg = problems(raw)
    assert "model.connector.depth" in msg and "greater than or equal to 1" in msg
    raw["model"]["connector"] = {"name": "mlp", "dept": 2}
    assert "model.connector.dept: unknown field" in problems(raw)


def test_overrides_apply_before_validation(raw):
    spec = resolve_spec(raw, ["stages.0.lr=1e-3", "seed=7", "model.connector.depth=3", "name=other"])
    assert spec.stages[0].lr == pytest.approx(1e-3)
    assert spec.seed == 7 and spec.name == "other"
    assert spec.model.connector.options["depth"] == 3
    assert "index 5 out of range" in problems(raw, ["stages.5.lr=1"])
    assert "expected KEY=VALUE" in problems(raw, ["stages.0.lr"])


def test_override_value_parsing():
    data: dict = {"a": {"b": [1, 2]}}
    apply_overrides(data, ["a.c=true", "a.b.1=2e-5", "a.d=[1, 2]", "a.e=hello"])
    assert data == {"a": {"b": [1, 2e-5], "c": True, "d": [1, 2], "e": "hello"}}


def test_recipe_fills_stages(raw):
    raw = copy.deepcopy(raw)
    del raw["stages"]
    raw["recipe"] = {"name": "base", "finetune_data": {"json_path": "x.json", "image_root": "img"}}
    raw["data"] = {"json_path": "y.json"}
    spec = resolve_spec(raw, ["stages.1.lr=1e-5"])
    assert [s.name for s in spec.stages] == ["pretrain", "finetune"]
    assert spec.stages[0].lr == pytest.approx(1e-3) and spec.stages[0].tune.connector == "full"
    assert spec.stages[0].tune.llm == "frozen" and spec.stages[1].tune.llm == "full"
    assert spec.stages[1].lr == pytest.approx(1e-5)
    assert str(spec.stages[1].data.json_path) == "x.json"


def test_data_needs_exactly_one_source(raw):
    raw["stages"][0]["data"] = {"json_path": "a.json", "dataset": {"name": "shapes"}}
    assert "exactly one of json_path" in problems(raw)


def test_load_spec_from_yaml_file(tmp_path, raw):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_spec(path).name == "tiny"
    path.write_text("model: [unclosed")
    with pytest.raises(SpecError, match="YAML syntax error"):
        load_spec(path)


def test_schema_includes_plugin_options():
    schema = run_spec_schema()
    defs = schema["$defs"]
    assert "connector.mlp" in defs
    assert defs["connector.mlp"]["properties"]["depth"]["default"] == 2
    assert "llm.llama" in defs and "vision_tower.clip" in defs
    model_props = defs["ModelSpec"]["properties"]
    assert {"$ref": "#/$defs/connector.mlp"} in model_props["connector"]["anyOf"]


def test_every_shipped_config_validates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    # configs/paper links to the rows shipped in the package; rglob does not follow links, so name it
    files = sorted([*root.glob("*.yaml"), *(root / "paper").glob("*.yaml")])
    assert len(files) >= 13  # the quickstart and a spec per row of the paper's Table 1
    for path in files:
        spec = load_spec(path)
        assert spec.stages, path


def test_misspelt_fields_get_did_you_mean(raw):
    raw["seeed"] = 1
    raw["stages"][0]["learning_rate"] = 1e-3
    raw["stages"][1]["tune"]["conector"] = "full"
    raw["stages"][0]["data"]["on_bad_recrd"] = "skip"
    text = problems(raw)
    assert "seeed: unknown field (value 1); did you mean 'seed'?" in text
    assert "stages.0.learning_rate: unknown field (value 0.001); did you mean 'lr'?" in text
    assert "stages.1.tune.conector: unknown field (value 'full'); did you mean 'connector'?" in text
    assert "stages.0.data.on_bad_recrd: unknown field (value 'skip'); did you mean 'on_bad_record'?" in text


def test_misspelt_component_option_gets_did_you_mean(raw):
    raw["model"]["connector"]["dpeth"] = 3
    assert "model.connector.dpeth: unknown field (value 3); did you mean 'depth'?" in problems(raw)


def test_num_threads_auto_or_positive(raw):
    raw["num_threads"] = "auto"
    assert resolve_spec(raw).num_threads == "auto"
    raw["num_threads"] = 0
    assert "num_threads: Value error, give 1 or more threads, or auto" in problems(raw)


def test_set_a_whole_mapping_replaces_the_slot(raw):
    spec = resolve_spec(raw, ["model.connector={name: linear}"])
    assert spec.model.connector.name == "linear" and "depth" not in spec.model.connector.options


def test_delete_a_key_or_a_list_item(raw):
    raw["model"]["connector"]["depth"] = 3
    spec = resolve_spec(raw, ["model.connector.depth=~delete", "stages.0=~delete", "num_threads=~delete"])
    assert spec.model.connector.options["depth"] == 2  # back to the default
    assert [s.name for s in spec.stages] == ["instruct"] and spec.num_threads is None
    assert "there is no 'dpeth' to remove (here: name, depth)" in problems(raw, ["model.connector.dpeth=~delete"])
    assert "index 5 out of range" in problems(raw, ["stages.5=~delete"])
