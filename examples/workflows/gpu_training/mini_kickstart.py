#!/usr/bin/env python3
"""A stand-in for pegasus-kickstart, for the demo only: pegasus-kickstart is a C program that
pip cannot install. Runs the job (its output goes to stderr) and writes a schema 3.0 YAML
invocation record with the fields Pegasus' tools read, then exits with the job's status.

    mini_kickstart.py -n TRANSFORMATION -I DERIVATION -- COMMAND [ARGS...]
"""

import argparse
import datetime as dt
import socket
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("-n", dest="transformation", default="job")
parser.add_argument("-I", dest="derivation", default="ID0000001")
parser.add_argument("command", nargs=argparse.REMAINDER)
args = parser.parse_args()
command = args.command[1:] if args.command[:1] == ["--"] else args.command
started = dt.datetime.now().astimezone()
clock = time.monotonic()
code = subprocess.call(command, stdout=sys.stderr)
duration = time.monotonic() - clock
status = code if code >= 0 else 128 - code
print(f"""- invocation: True
  version: 3.0
  start: {started.isoformat(timespec="milliseconds")}
  duration: {duration:.3f}
  transformation: "{args.transformation}"
  derivation: "{args.derivation}"
  resource: "local"
  hostname: {socket.gethostname()}
  mainjob:
    start: {started.isoformat(timespec="milliseconds")}
    duration: {duration:.3f}
    status:
      raw: {status << 8}
      regular_exitcode: {status}""", flush=True)
sys.exit(status)
