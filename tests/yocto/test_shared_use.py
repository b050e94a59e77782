# SPDX-License-Identifier: Apache-2.0
"""Only the real-layer harness may read ../shared (issue 10 allows it there
alone): the other Yocto tests, the layers and the CI scripts must pass
without it. (tests/it is another issue's.)"""

import re

import harness

ALLOWED = {"tests/yocto/reallayers.py"}
PATTERN = re.compile(r"""(\.\./shared|/work/shared|["']shared["'])""")


def test_only_the_real_layer_harness_refers_to_shared():
    offenders = []
    tops = ["tests/yocto", "classes", "conf", "recipes-tools", "meta-bundlegen", ".ci", ".github",
            "scripts/test", "scripts/gen-crates-inc"]
    for top in tops:
        root = harness.REPO / top
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            rel = str(path.relative_to(harness.REPO))
            if not path.is_file() or rel in ALLOWED or path.suffix in (".json", ".tar", ".gz", ".crate"):
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            if PATTERN.search(text) and rel != "tests/yocto/test_shared_use.py":
                offenders.append(rel)
    assert offenders == []
    assert PATTERN.search((harness.REPO / "tests/yocto/reallayers.py").read_text())


def test_without_shared_or_network_the_real_layer_tests_say_what_they_need(monkeypatch, tmp_path):
    """The exact wording other work relies on, when neither ../shared nor
    the upstream repositories can be had (an unresolvable URL stands for
    "no network")."""
    import pytest

    import reallayers

    monkeypatch.setattr(reallayers, "SHARED", tmp_path / "no-such-folder")
    monkeypatch.setattr(reallayers, "kas_repos", lambda: {"bitbake": ("https://repo.invalid/bitbake", "2.18")})
    monkeypatch.setattr(reallayers, "CACHE", tmp_path)
    def as_this_user(self):
        self.user, self.home = None, tmp_path
    monkeypatch.setattr(reallayers.Runner, "__init__", as_this_user)
    with pytest.raises(reallayers.SetupError) as e:
        reallayers.RealLayers()._check_network()
    assert str(e.value).startswith("the real-layer tests need ../shared/yocto-layers or network access to the "
                                   "upstream layer repositories")
