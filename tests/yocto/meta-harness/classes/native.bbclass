# SPDX-License-Identifier: Apache-2.0
# TEST HARNESS stand-in for oe-core's native.bbclass (BBCLASSEXTEND): bitbake
# already names the variant ${PN}-native; nothing else is needed here.
