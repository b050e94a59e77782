# SPDX-License-Identifier: Apache-2.0
"""The layers on the real wrynose layers, with the real bitbake, from the
kas files of meta-bundlegen (tests/yocto/reallayers.py says where the layers
come from and what is cached). The first run on a machine parses about
3,200 recipes per machine (minutes); later runs reuse bitbake's parse cache.
"""

import re

import pytest

import reallayers

MACHINES = reallayers.MACHINES
CONTAINER = "bundlegen-demo-container"
HOST = "bundlegen-demo-host"
OUR_LAYERS = ("/src/bundlegen/", "meta-bundlegen", "bundlegen.bbclass", "bundlegen_git.bb", "bundlegen-crates.inc")


def messages(output, level):
    return [line for line in output.splitlines() if line.startswith(level + ":")]


@pytest.mark.parametrize("machine", MACHINES)
def test_parse_has_no_error_and_no_warning_from_our_layers(parsed, machine):
    result = parsed[machine]
    assert result.returncode == 0, result.stdout[-8000:]
    assert messages(result.stdout, "ERROR") == []
    ours = [m for m in messages(result.stdout, "WARNING") if any(p in m for p in OUR_LAYERS)]
    assert ours == []
    summary = re.search(r"Parsing of (\d+) \.bb files complete \((\d+) cached, (\d+) parsed\)\. (\d+) targets, "
                        r"(\d+) skipped", result.stdout)
    assert summary, result.stdout[-3000:]
    assert int(summary.group(4)) > 3000
    # kas reads our kas files without complaint (e.g. about include paths)
    assert "file-relative addressing" not in result.stdout


# Task graph: bitbake -g of the host image -------------------------------

def dot_edges(text):
    """{(task, task it depends on)} of a task-depends.dot, as "pn.do_task"."""
    return set(re.findall(r'^"([^"]+)" -> "([^"]+)"', text, re.M))


@pytest.fixture(scope="session")
def task_graph(real):
    machine = "qemux86-64"
    real.bitbake(machine, "bitbake -g %s" % HOST)
    return dot_edges((real.builddir(machine) / "task-depends.dot").read_text())


@pytest.mark.parametrize("task, after", [
    # container side: between image-oci's task and the end of the image
    ("%s.do_bundlegen_bundles" % CONTAINER, "%s.do_image_oci" % CONTAINER),
    ("%s.do_image_complete" % CONTAINER, "%s.do_bundlegen_bundles" % CONTAINER),
    ("%s.do_bundlegen_bundles" % CONTAINER, "bundlegen-native.do_populate_sysroot"),
    # host side: the rootfs waits for the container image and the tool
    ("%s.do_rootfs" % HOST, "%s.do_image_complete" % CONTAINER),
    ("%s.do_rootfs" % HOST, "bundlegen-native.do_populate_sysroot"),
    # BSP side: the platform task, after the image, before it is complete
    ("%s.do_bundlegen_platform" % HOST, "%s.do_image" % HOST),
    ("%s.do_image_complete" % HOST, "%s.do_bundlegen_platform" % HOST),
    ("%s.do_bundlegen_platform" % HOST, "bundlegen-native.do_populate_sysroot"),
    # and the tool is built by its real recipe, with oe-core's cargo and Rust
    ("bundlegen-native.do_prepare_recipe_sysroot", "cargo-native.do_populate_sysroot"),
    ("bundlegen-native.do_prepare_recipe_sysroot", "rust-native.do_populate_sysroot"),
])
def test_host_image_task_graph(task_graph, task, after):
    assert (task, after) in task_graph


def test_container_bundles_are_not_made_before_the_oci_layout(task_graph):
    """No path from do_image_oci back to do_bundlegen_bundles (the task would
    read a layout that does not exist yet)."""
    graph = {}
    for a, b in task_graph:
        graph.setdefault(a, set()).add(b)
    seen, todo = set(), ["%s.do_image_oci" % CONTAINER]
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo += graph.get(t, ())
    assert "%s.do_bundlegen_bundles" % CONTAINER not in seen
    assert "%s.do_image" % CONTAINER in seen


# Variables: bitbake -e of the container image ---------------------------

def shell_function(env, name):
    m = re.search(r"^%s\(\) \{\n(.*?)^\}" % re.escape(name), env, re.M | re.S)
    assert m, "no shell function %s in bitbake -e" % name
    return m.group(1)


def variable(env, name):
    m = re.search(r'^(?:export )?%s="(.*)"$' % re.escape(name), env, re.M)
    return m.group(1) if m else None


@pytest.fixture(scope="session")
def container_env(real):
    return real.bitbake("qemux86-64", "bitbake -e %s" % CONTAINER).stdout


def test_multi_layer_mode_is_on(container_env):
    assert variable(container_env, "OCI_LAYER_MODE") == "multi"
    assert [x.split(":")[0] for x in variable(container_env, "OCI_LAYERS").split()] == ["base", "shell", "app"]
    assert "container" in variable(container_env, "IMAGE_FSTYPES").split()
    assert "oci_multilayer_install_packages" in container_env


def test_class_reads_the_link_image_oci_writes(container_env):
    """image-oci links ${IMAGE_BASENAME}-<tag with : as _>-oci to the layout;
    the class looks for that name, with the tag it reads."""
    body = shell_function(container_env, "do_image_oci")
    basename = variable(container_env, "IMAGE_BASENAME")
    tag = variable(container_env, "OCI_IMAGE_TAG")
    assert basename == CONTAINER and tag == "latest"
    assert 'image_tag="%s"' % tag in body
    assert "ln -sfn $image_name %s-$image_tag-oci" % basename in body
    assert "umoci new --image $image_name:%s" % tag in body
    assert "do_bundlegen_bundles" in container_env


# scarthgap (Yocto 5.0 LTS): the class and the demo parse there too ---------
#
# Each of our recipes (and bundlegen's native variant) is parsed by the real
# scarthgap bitbake with `bitbake -b RECIPE -e`, which reads the whole
# configuration of the kas files but only that recipe: a full `bitbake -p`
# of scarthgap would add minutes for recipes that are not ours.

SCARTHGAP_RECIPES = {
    CONTAINER: "meta-bundlegen/recipes-demo/images/bundlegen-demo-container.bb",
    HOST: "meta-bundlegen/recipes-demo/images/bundlegen-demo-host.bb",
    "bundlegen-demo": "meta-bundlegen/recipes-demo/bundlegen-demo/bundlegen-demo_1.0.bb",
    "bundlegen": "recipes-tools/bundlegen/bundlegen_git.bb",
    "bundlegen-native": "virtual:native:recipes-tools/bundlegen/bundlegen_git.bb",
}


@pytest.fixture(scope="session")
def scarthgap(real):
    try:
        layers = reallayers.RealLayers("scarthgap").setup()
    except reallayers.SetupError as e:
        pytest.fail(str(e), pytrace=False)
    envs = layers.builddir("qemux86-64") / "envs"
    layers.runner.mkdir(envs)
    lines = []
    for pn, path in SCARTHGAP_RECIPES.items():
        prefix, _, rel = path.rpartition(":")
        recipe = "%s%s/%s" % (prefix + ":" if prefix else "", layers.layer, rel)
        lines.append("bitbake -b %s -e > %s/%s.env 2> %s/%s.err; echo \"%s exit $?\"" % (
            recipe, envs, pn, envs, pn, pn))
    result = layers.bitbake("qemux86-64", "; ".join(lines), check=False)
    return result, {pn: (envs / ("%s.env" % pn), envs / ("%s.err" % pn)) for pn in SCARTHGAP_RECIPES}


@pytest.mark.parametrize("pn", sorted(SCARTHGAP_RECIPES))
def test_scarthgap_parses_our_recipes_with_no_error_and_no_warning(scarthgap, pn):
    result, files = scarthgap
    assert "%s exit 0" % pn in result.stdout, result.stdout[-8000:]
    env, err = (f.read_text() for f in files[pn])
    output = env + err
    assert messages(output, "ERROR") == []
    assert [m for m in messages(output, "WARNING") if any(p in m for p in OUR_LAYERS)] == []
    assert variable(env, "PN") == pn
    assert variable(env, "LAYERSERIES_CORENAMES") == "scarthgap"
    if pn == "bundlegen-native":
        # why scarthgap is not claimed: its Rust is older than rust-version
        assert variable(env, "RUSTVERSION") == "1.75%"


def test_scarthgap_image_oci_is_single_layer_and_the_link_matches(scarthgap):
    _, files = scarthgap
    env = files[CONTAINER][0].read_text()
    body = shell_function(env, "do_image_oci")
    assert "OCI_LAYER_MODE" not in body and "oci-layer-rootfs" not in body
    # scarthgap links with `ln -sf`, wrynose with `ln -sfn`: the same name
    assert "ln -sf $image_name %s-$image_tag-oci" % CONTAINER in body
    assert 'image_tag="latest"' in body
    assert "do_bundlegen_bundles" in env
