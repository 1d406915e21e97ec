#!/usr/bin/env python3
"""A libzmq CURVE ROUTER (pyzmq) that speaks only the two-frame envelope of docs/PROTOCOL.md.

Usage: pyzmq_curve_router.py ENDPOINT SECRET_KEY
Binds as a CURVE server with that secret key (any client key is let in: no ZAP handler).
Counts fire-and-forget bodies, answers each request with "echo:" + body, and a request
"stats" with {"count": n}. Prints "ready <endpoint>" once bound (pass tcp://127.0.0.1:0 for a
free port); exits when its stdin closes.
"""
import json
import os
import sys
import threading

import zmq


def main():
    endpoint, secret = sys.argv[1], sys.argv[2].encode()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.curve_publickey = zmq.curve_public(secret)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    host = endpoint[: endpoint.rindex(":")]
    port = sock.bind_to_random_port(host)
    print("ready %s:%d" % (host, port), flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    count = 0
    while True:
        frames = sock.recv_multipart()
        if len(frames) < 3:
            continue
        identity, corr, body = frames[0], frames[1], frames[2]
        if corr == b"":
            count += 1
        elif corr[:1] == b"\x01":
            reply = json.dumps({"count": count}).encode() if body == b"stats" else b"echo:" + body
            sock.send_multipart([identity, corr, reply])


if __name__ == "__main__":
    main()
