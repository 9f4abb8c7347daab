# Exit 0 if the file $1 exists, 1 if not: the test decides whether the run succeeds.
[ -e "$1" ]
