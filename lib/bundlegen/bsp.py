# SPDX-License-Identifier: Apache-2.0
"""BSP side: the device's platform, generated from the image rootfs, deployed
for bundling later (BUNDLEGEN_DEPLOY_PLATFORM, task do_bundlegen_platform)."""

import os
import shutil

import bb

import bundlegen.config
import bundlegen.tool


def setup(d):
    """Anonymous python: with BUNDLEGEN_DEPLOY_PLATFORM set, adds
    do_bundlegen_platform between do_image and do_image_complete."""
    if not bb.utils.to_boolean(d.getVar("BUNDLEGEN_DEPLOY_PLATFORM")):
        return
    bundlegen.config.check_common(d, "BUNDLEGEN_DEPLOY_PLATFORM")
    bb.build.addtask("do_bundlegen_platform", "do_image_complete", "do_image", d)
    d.appendVarFlag("do_bundlegen_platform", "depends", " bundlegen-native:do_populate_sysroot")
    d.appendVarFlag("do_bundlegen_platform", "file-checksums",
                    " " + bundlegen.config.input_files(d, ("BUNDLEGEN_PLATFORM_TEMPLATE",)))


def deploy_platform(d):
    """do_bundlegen_platform: `bundlegen platform init` on the rootfs (with
    the image manifest, which do_image has written by now), both files into
    ${IMGDEPLOYDIR}."""
    outdir = os.path.join(d.getVar("BUNDLEGEN_WORKDIR"), "deploy-platform")
    manifest = os.path.join(d.getVar("IMGDEPLOYDIR"), d.getVar("IMAGE_NAME") + ".manifest")
    name = bundlegen.tool.platform_init(d, outdir, manifest)
    for ext in (".json", "_libs.json"):
        src = os.path.join(outdir, name + ext)
        if not os.path.isfile(src):
            bb.fatal("bundlegen platform init reported success but wrote no %s" % src)
        shutil.copyfile(src, os.path.join(d.getVar("IMGDEPLOYDIR"), name + ext))
