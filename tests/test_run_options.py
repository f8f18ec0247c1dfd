"""Run options are declared once, on RunConfig's fields: `harness run`'s flags, the config file's keys and
build_config's keywords all come from there, and the data root is resolved by one function everywhere."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.run.config import ConfigError, RunConfig, build_config, load_config_file, resolve_data_root, run_options
from harness.run.sharding import Shard


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser(["run"], full=False)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]


def test_every_flag_of_harness_run_is_a_field_or_one_of_its_own_two() -> None:
    flags = {a.option_strings[0]: a.dest for a in _run_parser()._actions if a.option_strings and a.dest != "help"}
    declared = {option.flag: name for name, option in run_options() if option.flag}
    assert {f: d for f, d in flags.items() if f not in ("--config", "--no-report")} == declared
    assert set(declared.values()) <= {f.name for f in dataclasses.fields(RunConfig)}


def test_flags_parse_into_the_config_they_name(tmp_path: Path) -> None:
    argv = ["run", "--models", "empty,full", "--suite", "s.yaml", "--splits", "val,test", "--out", "o", "--data-root", "~/d",
            "--limit", "3", "--batch-size", "2", "--device", "cuda", "--shard", "1/2", "--timeout", "1.5", "--fail-fast",
            "--retry-failed"]
    args = build_parser(argv, full=False).parse_args(argv)
    config = build_config(args.config, **{name: getattr(args, name) for name, option in run_options() if option.flag})
    assert [m.name for m in config.models] == ["empty", "full"]
    assert (config.suite, config.splits, config.out, config.limit, config.batch_size, config.device) == (
        "s.yaml", ("val", "test"), Path("o"), 3, 2, "cuda")
    assert config.data_root == Path("~/d").expanduser() and config.shard == Shard(1, 2)
    assert (config.timeout, config.fail_fast, config.retry_failed, config.bootstrap_rounds) == (1.5, True, True, 1000)


def test_the_file_takes_every_field_with_a_key_and_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("suite: s.yaml\nsplits: [val]\nout: o\ndata_root: /data\nlimit: 5\nbatch_size: 4\ndevice: cuda\n"
                   "bootstrap_rounds: 50\ntimeout: 2\nmodels: {mine: {adapter: empty}}\n")
    config = build_config(cfg)
    assert (config.suite, config.splits, config.out, config.data_root, config.limit, config.batch_size, config.device,
            config.bootstrap_rounds, config.timeout) == ("s.yaml", ("val",), Path("o"), Path("/data"), 5, 4, "cuda", 50, 2.0)
    assert [(m.name, m.adapter) for m in config.models] == [("mine", "empty")]
    assert build_config(cfg, limit=2, splits="test", data_root=Path("/other")).limit == 2
    assert build_config(cfg, splits="test").splits == ("test",)
    assert build_config(cfg, data_root=Path("/other")).data_root == Path("/other")


def test_the_file_knows_exactly_the_fields_that_have_a_key(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("shard: 0/2\n")  # a flag only: one process's share, never a file's
    with pytest.raises(ConfigError) as err:
        load_config_file(cfg)
    known = sorted(name for name, option in run_options() if option.in_file)
    assert str(err.value) == f"{cfg}: unknown key(s) shard; known: {', '.join(known)}"


def test_a_bad_value_names_where_it_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    with pytest.raises(ConfigError, match=r"^--limit must be positive, got 0$"):
        build_config(limit=0)
    cfg.write_text("limit: 0\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: limit must be positive, got 0$"):
        build_config(cfg)
    cfg.write_text("timeout: -1\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: timeout must be positive seconds, got -1$"):
        build_config(cfg)
    cfg.write_text("batch_size: many\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: batch_size 'many' cannot be read"):
        build_config(cfg)
    with pytest.raises(TypeError, match="bootstrap_rounds"):  # a key of the file, not a flag
        build_config(bootstrap_rounds=5)


def test_one_data_root_precedence_for_run_and_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-root, else the config file's data_root, else $HARNESS_DATA, else none: for `harness run` and `harness data`."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data_root: ~/from-file\n")
    bare = tmp_path / "bare.yaml"
    bare.write_text("device: cpu\n")
    monkeypatch.setenv("HARNESS_DATA", "~/from-env")
    cases = [(Path("/flag"), cfg, Path("/flag")), (None, cfg, Path("~/from-file").expanduser()),
             (None, bare, Path("~/from-env").expanduser()), (None, None, Path("~/from-env").expanduser())]
    for flag, config_file, expected in cases:
        assert resolve_data_root(flag, config_file) == expected
        assert build_config(config_file, data_root=flag).data_root == expected
    monkeypatch.delenv("HARNESS_DATA")
    assert resolve_data_root(None, bare) is None and build_config(bare).data_root is None
