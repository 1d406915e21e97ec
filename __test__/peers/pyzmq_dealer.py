#!/usr/bin/env python3
"""A plain libzmq DEALER (pyzmq) that speaks only the two-frame envelope of docs/PROTOCOL.md.

Usage: pyzmq_dealer.py ENDPOINT
Sends 100 fire-and-forget bodies {"type":"log","n":i}, then one request
{"type":"time_request"} with corr b"\\x01py01", waits for the reply (5 s) and prints it as
JSON on stdout: {"corr": hex, "body": text, "frames": n}.
"""
import json
import sys

import zmq


def main():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 2000
    sock.connect(sys.argv[1])
    for i in range(100):
        sock.send_multipart([b"", json.dumps({"type": "log", "n": i}).encode()])
    corr = b"\x01py01"
    sock.send_multipart([corr, b'{"type":"time_request"}'])
    if not sock.poll(5000):
        print(json.dumps({"error": "no reply"}), flush=True)
        sys.exit(1)
    frames = sock.recv_multipart()
    print(json.dumps({"corr": frames[0].hex(), "body": frames[1].decode(), "frames": len(frames)}), flush=True)
    sock.close()
    ctx.term()


if __name__ == "__main__":
    main()
