# SPDX-License-Identifier: Apache-2.0
# TEST HARNESS stand-in for oe-core's nativesdk.bbclass (BBCLASSEXTEND):
# names the variant nativesdk-${BPN} as oe-core does.
PN := "nativesdk-${@d.getVar('PN').replace('-nativesdk', '')}"
