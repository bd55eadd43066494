#!/bin/sh
# Builds the SPSC wake-up litmus and runs every variant once (about 9
# minutes); see README.md for what each shows.
set -eu
cd "$(dirname "$0")"
gcc -O2 -pthread -o spsc_wake_litmus spsc_wake_litmus.c
run() { echo "### ./spsc_wake_litmus $*"; nice -n 10 timeout 200 ./spsc_wake_litmus "$@" 2>&1 | tail -4; }
run -m exp -r pre -t 60
run -m exp -r pre -p -t 60
run -m exp -r child -t 60
run -m exp -r child -p -t 60
run -m exp -P -t 60
run -m exp -r pre -s 0 -t 60
run -m global -t 30
run -m sym -t 60
run -m none -t 60
rm -f spsc_wake_litmus
