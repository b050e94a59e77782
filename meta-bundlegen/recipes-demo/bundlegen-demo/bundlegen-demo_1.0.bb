# SPDX-License-Identifier: Apache-2.0
SUMMARY = "bundlegen demo app"
DESCRIPTION = "A small C program that says hello and prints a heartbeat, \
               packaged with its app metadata for bundlegen."
HOMEPAGE = "https://github.com/bundlegen/bundlegen"
BUGTRACKER = "https://github.com/bundlegen/bundlegen/issues"
SECTION = "examples"
CVE_PRODUCT = "bundlegen-demo"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://bundlegen-demo.c;beginline=1;endline=1;md5=ba3eedb76f290442c6b8f1fe48168aa6"

SRC_URI = "file://bundlegen-demo.c \
           file://appmetadata.json \
"
S = "${UNPACKDIR}"

do_compile() {
    ${CC} ${CFLAGS} ${LDFLAGS} -o ${B}/bundlegen-demo ${S}/bundlegen-demo.c
}

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/bundlegen-demo ${D}${bindir}/bundlegen-demo
    # bundlegen reads an app's metadata from /appmetadata.json in its image.
    install -m 0644 ${S}/appmetadata.json ${D}/appmetadata.json
}

PACKAGES =+ "${PN}-appmetadata"
FILES:${PN}-appmetadata += "/appmetadata.json"
RDEPENDS:${PN} += "${PN}-appmetadata"
