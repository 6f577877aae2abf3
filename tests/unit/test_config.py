from dataclasses import dataclass
from typing import Literal

import pytest

from spaceport.core.config import describe, field_docs, from_strings, to_strings
from spaceport.core.errors import ConfigInvalid


@dataclass(frozen=True)
class Demo:
    steps: int = 100
    """Training steps."""
    lr: float = 0.01
    """Learning rate."""
    mode: Literal["auto", "global", "incremental"] = "auto"
    """Mapper."""
    verbose: bool = False
    """Print more."""
    target: float | None = None
    """Optional target."""
    size: tuple[int, int] = (640, 480)
    """Width and height."""


def test_round_trip_through_strings():
    cfg = Demo(steps=7, lr=0.5, mode="global", verbose=True, target=24.5, size=(32, 16))
    strings = to_strings(cfg)
    assert all(isinstance(v, str) for v in strings.values())
    assert from_strings(Demo, strings) == cfg


def test_parses_sagemaker_style_values():
    cfg = from_strings(Demo, {"steps": "3e3", "verbose": "True", "target": "none", "size": "800,600"})
    assert cfg.steps == 3000 and cfg.verbose is True and cfg.target is None and cfg.size == (800, 600)


def test_dashes_are_accepted_and_base_is_kept():
    cfg = from_strings(Demo, {"lr": "0.1"}, base=Demo(steps=5))
    assert cfg.steps == 5 and cfg.lr == 0.1


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"stpes": "1"}, "Did you mean 'steps'"),
        ({"steps": "many"}, "not an integer"),
        ({"steps": "1.5"}, "not an integer"),
        ({"lr": "nan"}, "finite"),
        ({"mode": "fast"}, "not one of auto, global, incremental"),
        ({"verbose": "maybe"}, "boolean"),
        ({"size": "1,2,3"}, "2 comma-separated"),
    ],
)
def test_bad_values_raise_config_invalid(values, needle):
    with pytest.raises(ConfigInvalid) as info:
        from_strings(Demo, values)
    assert needle in str(info.value)


def test_field_docs_are_read_from_source():
    docs = field_docs(Demo)
    assert docs["steps"] == "Training steps."
    assert ("mode", "auto", "Mapper.") in describe(Demo)


def test_stage_options_parse_and_reject():
    from spaceport.core.config import parse_stage_options

    assert parse_stage_options(["train.steps=500", "sfm.max-side=800"]) == {
        "train": {"steps": "500"}, "sfm": {"max_side": "800"},
    }
    for bad in ("train.steps", "steps=5", ".steps=5", "train.=5"):
        with pytest.raises(ConfigInvalid, match=r"STAGE\.OPTION=VALUE"):
            parse_stage_options([bad], flag="--option")


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    """Rate of the inner group."""

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ConfigInvalid(f"rate={self.rate} must be positive")


@dataclass(frozen=True)
class Grouped:
    demo: Demo = Demo()
    inner: Inner = Inner()


def test_groups_are_flat_options():
    """A field holding a dataclass is a group: its fields are options under their own names."""
    from spaceport.core.config import to_dict

    cfg = from_strings(Grouped, {"steps": "7", "rate": "0.25"})
    assert cfg.demo.steps == 7 and cfg.inner.rate == 0.25 and cfg.demo.lr == 0.01
    assert to_strings(cfg, only_changed=True) == {"steps": "7", "rate": "0.25"}
    assert from_strings(Grouped, to_strings(cfg)) == cfg
    assert to_dict(cfg)["rate"] == 0.25 and to_dict(cfg)["size"] == [640, 480] and "demo" not in to_dict(cfg)
    assert ("rate", "0.5", "Rate of the inner group.") in describe(Grouped)
    assert from_strings(Grouped, {"lr": "0.2"}, base=cfg) == Grouped(Demo(steps=7, lr=0.2), Inner(0.25))
    with pytest.raises(ConfigInvalid, match="Did you mean 'rate'"):
        from_strings(Grouped, {"rat": "1"})
    with pytest.raises(ConfigInvalid, match=r"rate=-1\.0 must be positive"):  # the group's own checks run
        from_strings(Grouped, {"rate": "-1"})


def test_an_option_name_is_declared_once():
    from spaceport.core.config import options

    @dataclass(frozen=True)
    class Twice:
        demo: Demo = Demo()
        steps: int = 3

    with pytest.raises(TypeError, match="'steps' is declared twice"):
        options(Twice)
