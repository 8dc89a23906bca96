# Sourced by the boot scripts.
# cmdline_value KEY prints the value of KEY=VALUE or KEY="VALUE WITH SPACES"
# from the kernel command line, or nothing. (The kernel keeps the quotes in
# /proc/cmdline; words with a dot are not passed to init as variables, so we
# read the file.)
cmdline_value() {
	echo " $(cat /proc/cmdline) " | sed -n \
		-e "s/.*[[:space:]]$1=\"\([^\"]*\)\".*/\1/p" -e 't' \
		-e "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p"
}
