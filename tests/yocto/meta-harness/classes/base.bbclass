# SPDX-License-Identifier: Apache-2.0
#
# TEST HARNESS stand-in for oe-core's base.bbclass: the do_build task that
# everything hangs off, and do_populate_sysroot, which copies ${D} into the
# one shared native sysroot (${STAGING_DIR_NATIVE}, on PATH).

addtask build
do_build[noexec] = "1"

python do_populate_sysroot() {
    import shutil
    shutil.copytree(d.getVar("D"), d.getVar("STAGING_DIR_NATIVE"), symlinks=True, dirs_exist_ok=True)
}
addtask populate_sysroot before do_build
