# SPDX-License-Identifier: Apache-2.0
"""Running bundlegen-native: every call of every task goes through run()."""

import os
import shutil
import subprocess

import bb

import bundlegen.config


def run(d, args, what, var, stdout=None):
    """Runs `bundlegen ARGS` from the native sysroot with SOURCE_DATE_EPOCH
    set and the build host's RDK_PLATFORM* variables removed.

    With `stdout` (a path) the command's standard output goes to that file
    and only its standard error is logged; otherwise both are logged. On
    failure stops the build with bundlegen's output, saying what to change:
    `what` names the input ("entry 'x' on platform y"), `var` the variable
    that holds it."""
    path = d.getVar("PATH")
    if not shutil.which("bundlegen", path=path):
        bb.fatal("bundlegen is not in the native sysroot (PATH=%s)\n  fix: the task needs "
                 "[depends] += \"bundlegen-native:do_populate_sysroot\"; is the bundlegen layer in BBLAYERS?" % path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDK_PLATFORM")}
    env["PATH"] = path
    sde = d.getVar("SOURCE_DATE_EPOCH")
    if sde:
        env["SOURCE_DATE_EPOCH"] = sde
    bb.note("Running: bundlegen %s" % " ".join(args))
    if stdout:
        with open(stdout, "w") as out:
            result = subprocess.run(["bundlegen"] + args, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        output = result.stderr
    else:
        result = subprocess.run(["bundlegen"] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        output = result.stdout
    if output:
        bb.note(output)
    if result.returncode == 0:
        return
    output = output.strip()
    if result.returncode == 2:
        bb.fatal("%s: %s is not compatible with the device:\n%s\n  fix: build the app for the platform's "
                 "architecture and libraries, or change the platform in %s" % (var, what, output, var))
    if result.returncode == 1:
        bb.fatal("%s: bundlegen rejected the input for %s:\n%s\n  fix: correct %s (or the platform, app metadata "
                 "or operator file it names)" % (var, what, output, var))
    bb.fatal("bundlegen failed (exit %d) for %s:\n%s" % (result.returncode, what, output))


def generate_args(d, runtime):
    """The `bundlegen generate` options every bundle shares."""
    args = ["generate", "-y", "-m", d.getVar("BUNDLEGEN_LIBMATCHING")]
    if runtime in ("crun", "runc"):
        args.append("-u")
    if bb.utils.to_boolean(d.getVar("BUNDLEGEN_CREATE_MOUNTPOINTS")):
        args.append("-r")
    if bb.utils.to_boolean(d.getVar("BUNDLEGEN_STRICT")):
        args.append("--strict")
    if d.getVar("BUNDLEGEN_OPERATOR"):
        args += ["--operator", d.getVar("BUNDLEGEN_OPERATOR")]
    for path in bundlegen.config.searchpath(d):
        args += ["-s", path]
    return args


def extra_args(d):
    """BUNDLEGEN_EXTRA_ARGS, for the end of every `bundlegen generate`."""
    return (d.getVar("BUNDLEGEN_EXTRA_ARGS") or "").split()


def platform_init(d, outdir, manifest=None):
    """Generates the device platform from ${IMAGE_ROOTFS} into `outdir` with
    `bundlegen platform init`; returns its name."""
    name = d.getVar("BUNDLEGEN_PLATFORM_NAME")
    bb.utils.mkdirhier(outdir)
    args = ["platform", "init", "--rootfs", d.getVar("IMAGE_ROOTFS"), "--name", name, "-o", outdir]
    template = d.getVar("BUNDLEGEN_PLATFORM_TEMPLATE")
    if template:
        args += ["--from", template]
        for path in bundlegen.config.searchpath(d):
            args += ["-s", path]
    pkgdata = d.getVar("PKGDATA_DIR")
    if pkgdata and os.path.isdir(pkgdata):
        args += ["--pkgdata", pkgdata]
    if manifest and os.path.isfile(manifest):
        args += ["--manifest", manifest]
    run(d, args, "the platform of %s" % d.getVar("PN"), "BUNDLEGEN_PLATFORM_TEMPLATE")
    return name

