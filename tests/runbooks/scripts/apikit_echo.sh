# Print $1 on stdout and exit with $2 (default 0): a run whose output and status the test picks.
printf '%s' "$1"
exit "${2:-0}"
