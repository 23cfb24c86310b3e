import pytest

from fixtures.paths import ROOT, make_cfg
from src.model_utils.config import SCHEMA, ConfigError, load_yaml, parse_cli


def test_three_config_files_have_every_key_and_load():
    for name in ("cpu_config.yaml", "gpu_config.yaml", "npu_config.yaml"):
        values, helps = load_yaml(f"{ROOT}/{name}")
        assert set(values) == set(SCHEMA)
        assert set(helps) == set(SCHEMA), f"{name}: every key is documented"


def test_defaults_and_overrides_including_lists():
    from src.model_utils.config import parse_cli
    cfg = parse_cli([])                                         # the file's defaults (make_cfg adds the test recipe)
    assert cfg.device_target == "CPU" and cfg.batch_size == "auto" and cfg.bottom_mlp_args == [512, 256, 64, 16]
    assert (cfg.interaction_op, cfg.optimizer, cfg.decay_steps, cfg.workers) == ("dcn", "adam", 0, "auto")
    assert (cfg.val_size, cfg.keep_best, cfg.table_schedule) == (0.05, True, False)
    cfg = make_cfg("--bottom_mlp_args=[256,64,16]", "--top_mlp_args", "[128, 1]", "--do_eval=False",
                   "--learning_rate=0.5", "--optimizer=adagrad")
    assert cfg.bottom_mlp_args == [256, 64, 16] and cfg.top_mlp_args == [128, 1]
    assert cfg.do_eval is False and cfg.learning_rate == 0.5 and cfg.optimizer == "adagrad"
    gpu = parse_cli([f"--config_path={ROOT}/gpu_config.yaml"])
    assert gpu.batch_size == "auto" and gpu.device_target == "GPU" and gpu.convert_dtype is True
    assert make_cfg("--workers=3").workers == 3
    with pytest.raises(ConfigError, match="expected auto or an integer, got 'many'"):
        make_cfg("--workers=many")


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        make_cfg("--bach_size=64")
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        make_cfg("--learning_rat=0.1")


@pytest.mark.parametrize("arg,msg", [
    ("--batch_size=abc", "batch_size"),
    ("--batch_size=0", "must be > 0"),
    ("--chunk_bytes=512", "key 'chunk_bytes' = 512 must be >= 1,024"),
    ("--optimizer=lamb", "not one of"),
    ("--bottom_mlp_args=[1,x]", "bottom_mlp_args"),
    ("--bottom_mlp_args=5", "list of integers"),
    ("--do_eval=maybe", "boolean"),
    ("--interaction_op=dot --bottom_mlp_args=[512,256,64,8]", "data_emb_dim"),
    ("--top_mlp_args=[512,256,2]", "must end with 1"),
    ("--convert_dtype=True", "CPU"),
])
def test_bad_values_are_rejected_with_the_key(arg, msg):
    with pytest.raises(ConfigError, match=msg):
        make_cfg(*arg.split(" "))


def test_yaml_unknown_key_and_missing_file(tmp_path):
    text = open(f"{ROOT}/cpu_config.yaml").read().replace("threshold: 1", "treshold: 1", 1)
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'treshold'; did you mean 'threshold'"):
        parse_cli([f"--config_path={p}"])
    with pytest.raises(ConfigError, match="does not exist"):
        parse_cli([f"--config_path={tmp_path}/nope.yaml"])


def test_every_key_is_used_somewhere_in_the_code():
    """Every key is read as a config attribute (`cfg.KEY` or `config.KEY`, the two names a config object has in this
    code), not merely present as `.KEY` on something else (a dataset's metadata, a spec)."""
    import glob
    import re
    code = ""
    for path in glob.glob(f"{ROOT}/src/**/*.py", recursive=True) + glob.glob(f"{ROOT}/*.py"):
        code += open(path).read()
    unused = [k for k in SCHEMA if not re.search(rf"\b(cfg|config)\.{k}\b", code)]
    assert not unused, f"config keys with no effect: {unused}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_float_key_refuses_a_non_finite_value(value):
    with pytest.raises(ConfigError, match="command line: key 'learning_rate': expected a finite number, got -?(nan|inf)"):
        make_cfg(f"--learning_rate={value}")
    with pytest.raises(ConfigError, match="max_bad_fraction"):
        make_cfg(f"--max_bad_fraction={value}")


def test_help_lists_every_key_grouped_with_type_default_and_help():
    """--help is rendered from the schema: every key once, under its YAML group, with its type, its value in the
    config file and its help text; a help text holding '%' (max_ind_range's) is shown as written."""
    from src.model_utils.config import GROUPS, SCHEMA, build_parser, load_yaml
    values, _ = load_yaml(f"{ROOT}/gpu_config.yaml")
    text = build_parser(values, "gpu_config.yaml", "The description.").format_help()
    assert "The description." in text and "Defaults shown are gpu_config.yaml's" in text
    flat = " ".join(text.split())
    for group, keys in GROUPS.items():
        assert f"{group}:" in text
        for key, spec in keys.items():
            assert flat.count(f"--{key} ") == 1, key
    assert "1 + key % (M-1)" in flat                                   # the '%' survived argparse's formatting
    assert "[int, default 4096]" in flat                                # batch_size in gpu_config.yaml
    assert "--optimizer sgd|adagrad|adam" in flat
    # the group order of --help is the YAML file's
    order = [text.index(f"\n{g}:") for g in GROUPS]
    assert order == sorted(order) and set(SCHEMA) == {k for keys in GROUPS.values() for k in keys}
