# Append the words after $1 as one line to the file $1, so a test sees what a runbook did.
out=$1
shift
printf '%s\n' "$*" >> "$out"
