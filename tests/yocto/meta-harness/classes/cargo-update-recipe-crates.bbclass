# SPDX-License-Identifier: Apache-2.0
# TEST HARNESS stand-in for oe-core's cargo-update-recipe-crates.bbclass: the
# include is written by scripts/gen-crates-inc here, so nothing to do.
