# Append the arguments after $1 as one line to the file $1: one line per run.
out=$1
shift
printf '%s\n' "$*" >> "$out"
