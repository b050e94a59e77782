# SPDX-License-Identifier: Apache-2.0
"""TEST HARNESS stand-in for bitbake's prserv package (imported by bb.cooker)."""
