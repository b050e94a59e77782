# SPDX-License-Identifier: Apache-2.0
SUMMARY = "Turn OCI images into device-specific OCI runtime bundles"
DESCRIPTION = "bundlegen flattens an OCI image, matches its libraries \
               against a device platform template and writes an OCI runtime \
               bundle (config.json and rootfs) for Dobby, crun or runc. \
               bundlegen-native is what bundlegen.bbclass runs at image \
               build time."
HOMEPAGE = "https://github.com/bundlegen/bundlegen"
BUGTRACKER = "https://github.com/bundlegen/bundlegen/issues"
SECTION = "devel"
CVE_PRODUCT = "bundlegen"
LICENSE = "Apache-2.0"
# The crate states its licence in Cargo.toml (the `license = ` line).
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=8;endline=8;md5=2507bd5f0713f05419cd2f22fa06fe62"

# This layer is the crate's own source tree: build the commit checked out
# here, so that this recipe, bundlegen-crates.inc and Cargo.lock always
# describe the same source (tests/yocto/test_crates_inc.py checks the
# include against Cargo.lock).
BUNDLEGEN_SRCTREE := "${@os.path.normpath(os.path.join(d.getVar('THISDIR'), '..', '..'))}"
# Where the checkout lies is not part of what is built: keep the path out of
# task signatures so builders in other directories share sstate.
BUNDLEGEN_SRCTREE[vardepvalue] = "bundlegen-layer-checkout"
PV = "0.1.0+git"
SRC_URI = "git://${BUNDLEGEN_SRCTREE};protocol=file;usehead=1;nobranch=1"
# The revision is the checkout's HEAD, the very commit this layer comes
# from: a given layer commit always builds the same source.
# nooelint: oelint.vars.autorev
SRCREV = "${AUTOREV}"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates

# cargo-update-recipe-crates's own do_update_crates (run by hand and by
# `devtool upgrade`) lists the crates of every Cargo.lock under S, the fuzz
# workspace's fuzz/Cargo.lock included, and so breaks the include and its
# test. The include is exactly Cargo.lock's crates.io packages, as
# scripts/gen-crates-inc writes them: the task runs that script.
do_update_crates() {
    nativepython3 ${S}/scripts/gen-crates-inc --lock ${S}/Cargo.lock --output ${THISDIR}/${BPN}-crates.inc
    bbnote "Updated ${THISDIR}/${BPN}-crates.inc from ${S}/Cargo.lock"
}

# The package's rust-version (1.90) is what whinlatter ships; wrynose ships
# 1.94. cargo.bbclass builds --frozen: every crate comes from the include.

BBCLASSEXTEND = "native nativesdk"
