# SPDX-License-Identifier: Apache-2.0
#
# TEST HARNESS stand-in for oe-core's extrausers.bbclass: set_user_group in
# ROOTFS_POSTPROCESS_COMMAND runs the groupadd and useradd commands of
# EXTRA_USERS_PARAMS on ${IMAGE_ROOTFS}, as oe-core's (same loop over ';'
# separated commands), with scripts/shadow-standin in place of shadow-native
# under pseudo. Other commands fail, as unknown ones do in oe-core's.

ROOTFS_POSTPROCESS_COMMAND += "set_user_group"

set_user_group () {
	user_group_settings="${EXTRA_USERS_PARAMS}"
	setting=`echo $user_group_settings | cut -d ';' -f1`
	remaining=`echo $user_group_settings | cut -d ';' -f2-`
	while test "x$setting" != "x"; do
		cmd=`echo $setting | cut -d ' ' -f1`
		opts=`echo $setting | cut -d ' ' -f2-`
		case $cmd in
			useradd|groupadd)
				eval ${HARNESS_SHADOW} $cmd -R ${IMAGE_ROOTFS} $opts || bbfatal "${PN}: $cmd command did not succeed."
				;;
			*)
				bbfatal "Invalid command in EXTRA_USERS_PARAMS: $cmd"
				;;
		esac
		if [ "$setting" = "$remaining" ]; then
			break
		fi
		setting=`echo $remaining | cut -d ';' -f1`
		remaining=`echo $remaining | cut -d ';' -f2-`
	done
}
