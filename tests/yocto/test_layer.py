# SPDX-License-Identifier: Apache-2.0
"""conf/layer.conf and the bundlegen recipe, as bitbake parses them."""

import re
import tomllib

import pytest

import harness


@pytest.mark.parametrize("release", ["wrynose", "whinlatter"])
def test_layer_parses_with_supported_releases(build, release):
    b = build(corename=release)
    assert "bundlegen" in b.data.getVar("BBFILE_COLLECTIONS").split()
    assert b.data.getVar("LAYERDEPENDS_bundlegen") == "core"


def test_layer_refuses_an_unsupported_release(build):
    with pytest.raises(harness.BitbakeError, match="bundlegen is not compatible with the core layer"):
        build(corename="scarthgap")


def test_adding_the_layer_changes_nothing(tmp_path, tool):
    """An image that does not inherit the class, and the configuration, are
    the same with and without the layer."""
    conf = 'MACHINE = "qemux86-64"\n'
    without = harness.Build(tmp_path / "a", conf, layers=[harness.HARNESS_LAYER]).parse(only=["harness-other-image"])
    with_layer = harness.Build(tmp_path / "b", conf).parse(only=["harness-other-image"])
    pn = "harness-other-image"
    for task in without.tasks(pn):
        assert without.basehash(pn, task) == with_layer.basehash(pn, task), task
    layer_vars = re.compile(r"^(BBPATH|BBFILES|BBFILE_.*|BBLAYERS|LAYER.*|TOPDIR|FILE|__.*|BB_.*|BBINCLUDED|HOME)$")
    keys = {k for k in without.data.keys() if not layer_vars.match(k)} | \
           {k for k in with_layer.data.keys() if not layer_vars.match(k)}
    changed = [k for k in sorted(keys) if k.startswith(("BUNDLEGEN", "bundlegen"))
               or (without.data.getVar(k, False) != with_layer.data.getVar(k, False)
                   and "TOPDIR" not in str(without.data.getVar(k, False)))]
    assert changed == []


def test_recipe_and_variants(build):
    b = build()
    for pn in ("bundlegen", "bundlegen-native", "nativesdk-bundlegen"):
        assert pn in b.recipes
    d = b.d("bundlegen-native")
    assert d.getVar("BBCLASSEXTEND").split() == ["native", "nativesdk"]
    assert "cargo" in d.getVar("__inherit_cache", False)[0] or d.getVar("__inherit_cache", False)


def test_rust_version_fits_the_supported_releases():
    """whinlatter ships Rust 1.90, wrynose 1.94: the crate must build with 1.90."""
    cargo = tomllib.loads((harness.REPO / "Cargo.toml").read_text())
    version = tuple(int(x) for x in cargo["package"]["rust-version"].split("."))
    assert version <= (1, 90), version


def test_every_class_variable_is_documented():
    classes = sorted((harness.REPO / "classes").glob("bundlegen*.bbclass"))
    variables = set()
    for path in classes:
        text = path.read_text()
        found = set(re.findall(r"^(BUNDLEGEN_[A-Z_]+) \?\??=", text, re.M))
        # and each has a comment saying its format and default
        for v in found:
            before = text[:text.index("\n%s " % v)].rsplit("\n\n", 1)[-1]
            assert "Default" in before, v
        variables |= found
    docs = (harness.REPO / "docs" / "yocto.md").read_text()
    assert len(variables) >= 19
    assert [v for v in sorted(variables) if "`%s`" % v not in docs] == []
