"""liftline.app: registering reducers and loading an App from module:attribute."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liftline.app import App, load_app
from liftline.codec import BUILTIN_OPS
from liftline.errors import ConfigError
from liftline.store.memory import PartitionStore


def test_a_reducer_is_registered_under_its_op() -> None:
    app = App("shop")

    @app.reducer("max")
    def keep_max(current: Any, value: Any) -> Any:
        return value if current is None else max(current, value)

    assert app.name == "shop"
    assert app.reducers == {"max": keep_max}
    # The decorator hands the function back unchanged.
    assert keep_max(None, 3) == 3
    assert keep_max(5, 3) == 5


def test_registering_an_op_again_replaces_it() -> None:
    app = App()
    app.reducer("op")(lambda current, value: 1)
    app.reducer("op")(lambda current, value: 2)
    assert app.reducers["op"](None, None) == 2


def test_apps_do_not_share_reducers() -> None:
    first, second = App(), App()
    first.reducer("only_first")(lambda current, value: value)
    assert second.reducers == {}


@pytest.mark.parametrize("op", sorted(BUILTIN_OPS))
def test_built_in_op_names_are_refused(op: str) -> None:
    with pytest.raises(ConfigError, match=op):
        App().reducer(op)


@pytest.mark.parametrize("op", ["", "x" * 65])
def test_op_names_must_be_1_to_64_chars(op: str) -> None:
    with pytest.raises(ConfigError):
        App().reducer(op)


def test_a_64_char_op_name_is_accepted() -> None:
    app = App()
    app.reducer("x" * 64)(lambda current, value: value)
    assert list(app.reducers) == ["x" * 64]


def test_an_apps_reducers_drive_a_partition_store() -> None:
    app = App()

    @app.reducer("add_tag")
    def add_tag(current: Any, value: Any) -> Any:
        tags = set(current or [])
        tags.add(value)
        return sorted(tags)

    store = PartitionStore(0, reducers=app.reducers)
    writes = [["add_tag", "k", "b"], ["add_tag", "k", "a"], ["add_tag", "k", "b"]]
    assert store.apply_batch(0, "p", 1, writes) == 3
    assert store.get("k") == (["a", "b"], 3)


# -- load_app --------------------------------------------------------------

APP_MODULE = '''
from liftline.app import App

app = App("default-attr")
other = App("named-attr")
not_an_app = "just a string"


@app.reducer("double")
def double(current, value):
    return value * 2
'''


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh importable module that defines Apps."""
    name = f"liftline_unit_app_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_app_by_module_and_attribute(app_module: str) -> None:
    app = load_app(f"{app_module}:other")
    assert isinstance(app, App)
    assert app.name == "named-attr"


@pytest.mark.parametrize("suffix", ["", ":"], ids=["module-only", "empty-attribute"])
def test_load_app_defaults_to_the_attribute_app(app_module: str, suffix: str) -> None:
    app = load_app(app_module + suffix)
    assert app.name == "default-attr"
    assert app.reducers["double"](None, 4) == 8


def test_load_app_returns_the_same_object_each_time(app_module: str) -> None:
    assert load_app(f"{app_module}:app") is load_app(f"{app_module}:app")


@pytest.mark.parametrize(
    "spec",
    ["", ":app", "liftline_no_such_module_xyz:app", "liftline_no_such_module_xyz",
     "liftline.no_such_submodule:app"],
)
def test_load_app_refuses_specs_that_name_no_module(spec: str) -> None:
    with pytest.raises(ConfigError):
        load_app(spec)


@pytest.mark.parametrize("attribute", ["missing", "not_an_app", "double", "App", "app.name"])
def test_load_app_refuses_attributes_that_are_not_an_app(app_module: str,
                                                         attribute: str) -> None:
    with pytest.raises(ConfigError, match="not a liftline.App"):
        load_app(f"{app_module}:{attribute}")


def test_load_app_refuses_a_module_without_an_app() -> None:
    with pytest.raises(ConfigError):
        load_app("json")
