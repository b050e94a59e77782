# SPDX-License-Identifier: Apache-2.0
#
# TEST HARNESS stand-in for oe-core's cargo.bbclass. There is no Rust cross
# toolchain nor network here: "compiling" installs the bundlegen binary the
# test session built with cargo from this same checkout (HARNESS_TOOL).

HARNESS_TOOL ?= ""

python do_compile() {
    import shutil
    tool = d.getVar("HARNESS_TOOL")
    if not tool or not os.path.isfile(tool):
        bb.fatal("HARNESS_TOOL (the bundlegen binary built by cargo) is not set or missing: %s" % tool)
    bindir = d.getVar("D") + d.getVar("bindir")
    bb.utils.mkdirhier(bindir)
    shutil.copy2(tool, os.path.join(bindir, "bundlegen"))
}
do_compile[cleandirs] = "${D}"
addtask compile before do_populate_sysroot
