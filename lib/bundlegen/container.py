# SPDX-License-Identifier: Apache-2.0
"""Container side: bundle archives beside an image's OCI layout
(BUNDLEGEN_PLATFORMS, task do_bundlegen_bundles)."""

import os
import shutil

import bb

import bundlegen.config
import bundlegen.deploy
import bundlegen.tool

SUFFIXES = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}


def check_image_types(d):
    """The image types must be right before image.bbclass's own anonymous
    python looks at IMAGE_FSTYPES (it stops with "No IMAGE_CMD defined for
    IMAGE_FSTYPES entry 'container'", which names no fix): this runs on
    RecipePreFinalise, after the deferred inherits and before any anonymous
    python."""
    if not (d.getVar("BUNDLEGEN_PLATFORMS") or "").split():
        return
    fail = bundlegen.config.fail
    fstypes = (d.getVar("IMAGE_FSTYPES") or "").split()
    if "oci" not in fstypes:
        fail("BUNDLEGEN_PLATFORMS",
             "bundles are made from the image's OCI layout, but 'oci' is not in IMAGE_FSTYPES (%s)"
             % " ".join(fstypes),
             'set IMAGE_FSTYPES = "container oci" and IMAGE_CONTAINER_NO_DUMMY = "1", and inherit '
             'image-oci (meta-virtualization), or leave BUNDLEGEN_PLATFORMS empty')
    if not bb.data.inherits_class("image-oci", d):
        fail("BUNDLEGEN_PLATFORMS", "the image does not inherit image-oci",
             "inherit image-oci (meta-virtualization) in %s" % d.getVar("PN"))
    if not d.getVar("OCI_IMAGE_TAG"):
        fail("OCI_IMAGE_TAG",
             "it is empty: image-oci then runs `umoci new --image <layout>:`, which umoci refuses "
             "(its shell fallback to 'initial-tag' never applies, as bitbake expands the variable first)",
             'leave OCI_IMAGE_TAG unset (image-oci uses "latest") or give it a tag')
    if "container" not in fstypes:
        fail("IMAGE_FSTYPES",
             "'oci' needs 'container' in IMAGE_FSTYPES too (%s): image-oci sets "
             "IMAGE_TYPEDEP:oci = \"container tar.bz2\" and oe-core adds the container type only "
             "when it is listed" % " ".join(fstypes),
             'set IMAGE_FSTYPES = "container oci" and IMAGE_CONTAINER_NO_DUMMY = "1"')
    if d.getVar("IMAGE_CONTAINER_NO_DUMMY") != "1" and \
            "linux-dummy" not in (d.getVar("PREFERRED_PROVIDER_virtual/kernel") or ""):
        fail("IMAGE_CONTAINER_NO_DUMMY",
             "a 'container' image wants PREFERRED_PROVIDER_virtual/kernel = \"linux-dummy\" or "
             "IMAGE_CONTAINER_NO_DUMMY = \"1\", else oe-core skips the recipe",
             'set IMAGE_CONTAINER_NO_DUMMY = "1" in %s' % d.getVar("PN"))


def setup(d):
    """Anonymous python: with BUNDLEGEN_PLATFORMS set, checks the values and
    adds do_bundlegen_bundles between do_image_oci and do_image_complete."""
    platforms = (d.getVar("BUNDLEGEN_PLATFORMS") or "").split()
    if not platforms:
        return
    bundlegen.config.check_common(d, "BUNDLEGEN_PLATFORMS")
    bundlegen.config.choice(d, "BUNDLEGEN_COMPRESSION", d.getVar("BUNDLEGEN_COMPRESSIONS"))
    appmetadata = d.getVar("BUNDLEGEN_APPMETADATA")
    if appmetadata and not os.path.isfile(appmetadata):
        bundlegen.config.fail("BUNDLEGEN_APPMETADATA", "'%s' is not a file" % appmetadata,
                              "set BUNDLEGEN_APPMETADATA to an absolute path of an existing file, or empty")
    for platform in platforms:
        bundlegen.config.check_platform(d, "BUNDLEGEN_PLATFORMS", platform)
    bb.build.addtask("do_bundlegen_bundles", "do_image_complete", "do_image_oci", d)
    d.appendVarFlag("do_bundlegen_bundles", "depends", " bundlegen-native:do_populate_sysroot")
    d.appendVarFlag("do_bundlegen_bundles", "file-checksums",
                    " " + bundlegen.config.input_files(d, ("BUNDLEGEN_APPMETADATA", "BUNDLEGEN_OPERATOR")))


def write_bundles(d):
    """do_bundlegen_bundles: one bundlegen call for every platform, then each
    archive and report moved into ${IMGDEPLOYDIR} with its stable link."""
    imgdeploydir = d.getVar("IMGDEPLOYDIR")
    basename = d.getVar("IMAGE_BASENAME")
    tag = d.getVar("OCI_IMAGE_TAG")
    image = bundlegen.deploy.oci_layout(imgdeploydir, basename, tag)
    if image is None:
        bb.fatal("BUNDLEGEN_PLATFORMS: no OCI layout %s in %s\n  fix: keep 'oci' in IMAGE_FSTYPES and "
                 "OCI_IMAGE_TAG as image-oci uses it" % (bundlegen.deploy.oci_link(basename, tag), imgdeploydir))
    compression = d.getVar("BUNDLEGEN_COMPRESSION")
    suffix = SUFFIXES[compression]
    workdir = d.getVar("BUNDLEGEN_WORKDIR")
    image_name = d.getVar("IMAGE_NAME")

    platforms = d.getVar("BUNDLEGEN_PLATFORMS").split()
    args = bundlegen.tool.generate_args(d, d.getVar("BUNDLEGEN_RUNTIME"))
    for platform in platforms:
        args += ["-p", platform]
    args += ["--compression", compression]
    if d.getVar("BUNDLEGEN_APPMETADATA"):
        args += ["-a", d.getVar("BUNDLEGEN_APPMETADATA")]
    if d.getVar("BUNDLEGEN_APPID"):
        args += ["-x", d.getVar("BUNDLEGEN_APPID")]
    # One call for every platform: the image is flattened and analysed once.
    # With one platform the bundle is OUTPUTDIR itself (BundleGen's form) and
    # --report is its report; with several, OUTPUTDIR/<platform> and
    # OUTPUTDIR/<platform>.report.json, and --report is the summary.
    if len(platforms) == 1:
        out = os.path.join(workdir, "%s-bundle-%s" % (image_name, platforms[0]))
        report = out + ".report.json"
    else:
        out = os.path.join(workdir, "bundles")
        report = os.path.join(workdir, "summary.json")
    args += ["--report", report]
    args += bundlegen.tool.extra_args(d) + [image, out]
    bundlegen.tool.run(d, args, "%s on platform%s %s" % (d.getVar("PN"), "s" if len(platforms) > 1 else "",
                                                         ", ".join(platforms)), "BUNDLEGEN_PLATFORMS")

    for platform in platforms:
        base = out if len(platforms) == 1 else os.path.join(out, platform)
        for ext in (suffix, ".report.json"):
            produced = base + ext
            if not os.path.isfile(produced):
                bb.fatal("bundlegen reported success but wrote no %s" % produced)
            name = "%s-bundle-%s%s" % (image_name, platform, ext)
            shutil.move(produced, os.path.join(imgdeploydir, name))
            bundlegen.deploy.link(d, name, "-bundle-%s%s" % (platform, ext))
