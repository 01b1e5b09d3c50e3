"""Repeated blocks (model.blocks): expansion equals the hand-written specs; mistakes name the block and field."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nnctl import spec
from nnctl.build import build_model
from nnctl.errors import SpecError

ROOT = pathlib.Path(__file__).resolve().parent.parent
REF = pathlib.Path(__file__).resolve().parent / "specs_blocks_ref"


def _model(s: dict, shape, defaults=None):
    return build_model(s, shape, seed=s.seed, defaults=defaults)


@pytest.mark.parametrize(
    "name, shape, defaults",
    [
        ("resnet_small.toml", (32, 32, 3), None),
        ("text_transformer.toml", (28,), {"input_dim": 200}),
    ],
)
def test_blocks_expand_to_the_hand_written_spec(name, shape, defaults):
    ours, ref = spec.load(ROOT / "specs" / name), spec.load(REF / name)
    # the same entries (names, types, every key) in the same order
    assert ours.model.layers == ref.model.layers
    a, b = _model(ours, shape, defaults), _model(ref, shape, defaults)
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    assert sum(n.layer.param_count() for n in a.nodes) == sum(n.layer.param_count() for n in b.nodes)
    for na, nb in zip(a.nodes, b.nodes, strict=True):  # same weights from the same seed
        assert na.layer.params.keys() == nb.layer.params.keys()
        for k in na.layer.params:
            np.testing.assert_array_equal(na.layer.params[k], nb.layer.params[k])


BASE = {
    "data": {"train": "x.csv"},
    "model": {
        "blocks": {
            "mlp": {
                "params": ["units"],
                "defaults": {"act": "relu"},
                "layers": [
                    {"type": "Dense", "units": "{units}", "activation": "{act}", "name": "{name}_fc"},
                    {"type": "Dropout", "rate": 0.1, "name": "{name}_drop"},
                ],
            }
        },
        "layers": [
            {"block": "mlp", "units": 8, "repeat": 3, "name": "h{index}"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    },
    "train": {"loss": "categorical_crossentropy"},
}


def _with(**changes):
    s = json.loads(json.dumps(BASE))
    for path, value in changes.items():
        node = s
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is KeyError:
            del node[keys[-1]]
        elif isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return s


def test_repeat_names_each_instance_and_chains_them():
    layers = spec.validate(BASE).model.layers
    assert [e["name"] for e in layers] == ["h1_fc", "h1_drop", "h2_fc", "h2_drop", "h3_fc", "h3_drop", "dense"]
    assert [e["units"] for e in layers if e["type"] == "Dense"] == [8, 8, 8, 3]
    assert layers[0]["activation"] == "relu"  # a default parameter, kept with its type


def test_name_without_index_gets_a_suffix_and_input_is_the_previous_layer():
    s = _with(
        model__layers__0={"block": "res", "repeat": 2, "name": "r"},
        model__blocks={
            "res": {
                "layers": [
                    {"type": "Dense", "units": 4, "name": "{name}_a"},
                    {"type": "Add", "inputs": ["{name}_a", "{input}"], "name": "{name}_out"},
                ]
            }
        },
    )
    s["model"]["layers"].insert(0, {"type": "Dense", "units": 4, "name": "stem"})
    layers = spec.validate(s).model.layers
    assert [(e["name"], e.get("inputs")) for e in layers[:5]] == [
        ("stem", None),
        ("r_1_a", None),
        ("r_1_out", ["r_1_a", "stem"]),
        ("r_2_a", None),
        ("r_2_out", ["r_2_a", "r_1_out"]),
    ]


def test_blocks_nest():
    s = _with(
        model__blocks__pair={
            "params": ["u"],
            "layers": [
                {"block": "mlp", "units": "{u}", "name": "{name}_x"},
                {"block": "mlp", "units": "{u}", "name": "{name}_y"},
            ],
        },
        model__layers__0={"block": "pair", "u": 5, "name": "p"},
    )
    layers = spec.validate(s).model.layers
    assert [e["name"] for e in layers][:4] == ["p_x_fc", "p_x_drop", "p_y_fc", "p_y_drop"]
    assert layers[2]["units"] == 5


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"model__layers__0__block": "mpl"}, "model.layers[0].block: unknown block \"mpl\"; did you mean 'mlp'?"),
        (
            {"model__layers__0__unit": 3},
            "model.layers[0].unit: unknown parameter of block 'mlp'; did you mean 'units'?",
        ),
        ({"model__layers__0__units": KeyError}, "model.layers[0].units: required parameter of block 'mlp' is missing"),
        ({"model__layers__0__repeat": 0}, "model.layers[0].repeat: expected an integer from 1 to 10000, found 0"),
        (
            {"model__layers__0__repeat": 10**9},
            "model.layers[0].repeat: expected an integer from 1 to 10000, found 1000000000",
        ),
        ({"model__layers__0__repeat": 6000}, "model.layers[0]: the blocks expand to more than 10000 layers"),
        (
            {"model__blocks__mlp__layers__0__units": "{unit}"},
            "model.blocks.mlp.layers[0].units: unknown parameter {unit} in block 'mlp'; did you mean 'units'?",
        ),
        ({"model__blocks__mlp__layer": []}, "model.blocks.mlp.layer: unknown key for a block; did you mean 'layers'?"),
        # a value given at the use that the layer refuses: the block's field, and the use it came from
        (
            {"model__layers__0__units": -2},
            "model.blocks.mlp.layers[0].units: expected a positive integer, found -2 (in model.layers[0], block 'mlp', "
            "name 'h1')",
        ),
        (
            {"model__layers__0__act": "rleu"},
            "model.blocks.mlp.layers[0].activation: unknown activation 'rleu'; did you mean 'relu'?",
        ),
        (
            {"model__blocks__loop": {"layers": [{"block": "loop"}]}, "model__layers__0": {"block": "loop"}},
            "blocks nest deeper than 8",
        ),
    ],
)
def test_block_mistakes_name_the_block_and_field(changes, expected):
    with pytest.raises(SpecError) as exc:
        spec.validate(_with(**changes), "s.toml")
    assert expected in str(exc.value), str(exc.value)


def test_duplicate_names_from_two_uses_are_reported_at_the_block():
    s = _with(model__layers__0={"block": "mlp", "units": 4, "name": "a"})
    s["model"]["layers"].insert(1, {"block": "mlp", "units": 4, "name": "a"})
    with pytest.raises(SpecError) as exc:
        spec.validate(s, "s.toml")
    assert "model.blocks.mlp.layers[0].name: 'a_fc' is already used by model.blocks.mlp.layers[0]" in str(exc.value)
    assert "(in model.layers[1], block 'mlp', name 'a')" in str(exc.value)


def test_check_lists_every_expanded_layer_and_errors_are_one_line(tmp_path):
    cmd = [sys.executable, "-m", "nnctl", "check", "--json", str(ROOT / "specs" / "resnet_small.toml")]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    names = [layer["name"] for layer in out["layers"]]
    assert names[3:10] == ["b1_conv1", "b1_bn1", "b1_relu1", "b1_conv2", "b1_bn2", "b1_add", "b1_out"]
    assert "b3_proj_bn" in names and len(names) == 30
    bad = tmp_path / "bad.toml"
    text = (ROOT / "specs" / "resnet_small.toml").read_text().replace("filters = 32\n", "filter = 32\n", 1)
    bad.write_text(text)
    r = subprocess.run([sys.executable, "-m", "nnctl", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {bad}: model.layers[4].filter: unknown parameter of block 'res_down'; did you mean 'filters'?",
        f"error: {bad}: model.layers[4].filters: required parameter of block 'res_down' is missing",
    ]
