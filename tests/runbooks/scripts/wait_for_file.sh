# Wait until the file $1 exists, then exit 0: the test decides when the run ends.
while [ ! -e "$1" ]; do
    sleep 0.02
done
