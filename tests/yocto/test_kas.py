# SPDX-License-Identifier: Apache-2.0
"""meta-bundlegen/kas: the files kas would read are valid for kas's own
schema and build bundlegen-demo-host for both machines from one file each.
(The builds themselves need the network: .github/workflows/yocto.yml.)"""

import json
import pathlib

import jsonschema
import kas
import pytest
import yaml

import harness

KAS = harness.REPO / "meta-bundlegen" / "kas"
SCHEMA = json.loads((pathlib.Path(kas.__file__).parent / "schema-kas.json").read_text())


def load(path):
    """A kas file with its includes merged (includes first, as kas does)."""
    data = yaml.safe_load(path.read_text())
    jsonschema.validate(data, SCHEMA)
    merged = {}
    for inc in data.get("header", {}).get("includes", []):
        # repo-relative, as kas resolves it (file-relative is deprecated)
        merged = merge(merged, load(harness.REPO / inc))
    return merge(merged, data)


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("machine", ["qemux86-64", "qemuarm64"])
def test_machine_file_is_complete(machine):
    config = load(KAS / ("%s.yml" % machine))
    assert config["machine"] == machine
    assert config["target"] == ["bundlegen-demo-host"]
    layers = {(name, layer) for name, repo in config["repos"].items() for layer in (repo or {}).get("layers", {})}
    for needed in [("bundlegen", "."), ("bundlegen", "meta-bundlegen"), ("openembedded-core", "meta"),
                   ("meta-virtualization", "."), ("meta-openembedded", "meta-oe")]:
        assert needed in layers
    assert "INIT_MANAGER = \"systemd\"" in config["local_conf_header"]["bundlegen"]


def test_testimage_file_runs_the_bundle_test():
    config = load(KAS / "testimage.yml")
    assert config["task"] == "testimage"
    assert "bundlegen" in config["local_conf_header"]["testimage"]
    assert (harness.REPO / "meta-bundlegen/lib/oeqa/runtime/cases/bundlegen.py").exists()


# BitBake's branch for each release (the release notes' "Repositories /
# Downloads" sections): kas must pair the layers' branch with its BitBake.
BITBAKE_BRANCH = {"wrynose": "2.18", "whinlatter": "2.16"}


def test_bitbake_branch_matches_the_release():
    config = load(KAS / "qemux86-64.yml")
    release = config["defaults"]["repos"]["branch"]
    assert config["repos"]["bitbake"]["branch"] == BITBAKE_BRANCH[release]
    compat = (harness.REPO / "conf" / "layer.conf").read_text()
    assert release in compat.split("LAYERSERIES_COMPAT_bundlegen", 1)[1].splitlines()[0]
