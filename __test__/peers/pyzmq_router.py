#!/usr/bin/env python3
"""A plain libzmq ROUTER (pyzmq) that speaks only the two-frame envelope of docs/PROTOCOL.md.

It counts fire-and-forget bodies (empty corr) and answers each request by echoing
"echo:" + body with the corr copied. Bodies of the form "stats" (as a request) are answered
with a JSON count so a test can check what arrived; "slow:<ms>" waits before answering (out of
order replies); "silent" is never answered. Prints "ready <endpoint>" once bound (pass tcp://127.0.0.1:0 for a free port); exits on
SIGTERM or when its stdin closes (so it never outlives the test).
"""
import json
import os
import sys
import threading
import time

import zmq


def bind_router(endpoint):
    """A ROUTER bound to `endpoint` (tcp://host:0: a free port), and the endpoint bound."""
    sock = zmq.Context().socket(zmq.ROUTER)
    # No high-water marks: a test peer must lose nothing, and with the defaults (1000) libzmq
    # does when this process is short of CPU (a loaded CI machine). On send, a ROUTER silently
    # drops what it sends to a peer whose pipe is full (a burst of delayed replies). On receive,
    # a full pipe stops reading the connection, and if the peer then closes it (a client's
    # close() after a burst) libzmq takes the hang-up for an error and discards what is still
    # unread in the kernel.
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    # Keep the default linger: libzmq uses the socket's linger when a peer disconnects, and with
    # linger 0 it discards what that peer sent but the application has not read yet.
    if endpoint.endswith(":0"):
        # Let the OS pick a free port and tell the test which one.
        port = sock.bind_to_random_port(endpoint[: endpoint.rindex(":")])
        endpoint = "%s:%d" % (endpoint[: endpoint.rindex(":")], port)
    else:
        sock.bind(endpoint)
    return sock, endpoint


def main():
    sock, endpoint = bind_router(sys.argv[1])
    print("ready " + endpoint, flush=True)

    # Exit when the test goes away, even if it could not send SIGTERM.
    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()

    count = 0
    order_ok = True
    last_seq = -1
    bodies_bytes = 0
    delayed = []  # (due, frames)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while True:
        timeout = None
        if delayed:
            timeout = max(0, (min(d[0] for d in delayed) - time.monotonic()) * 1000)
        events = dict(poller.poll(timeout))
        now = time.monotonic()
        for item in [d for d in delayed if d[0] <= now]:
            delayed.remove(item)
            sock.send_multipart(item[1])
        if sock not in events:
            continue
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 3:
                continue
            ident, corr, body = frames
            if not corr:
                count += 1
                bodies_bytes += len(body)
                # Bodies "seq:<n>" let the test check ordering.
                if body.startswith(b"seq:"):
                    n = int(body[4:])
                    if n != last_seq + 1:
                        order_ok = False
                    last_seq = n
                continue
            if body == b"stats":
                reply = json.dumps({"count": count, "bytes": bodies_bytes, "orderOk": order_ok,
                                    "lastSeq": last_seq}).encode()
                sock.send_multipart([ident, corr, reply])
            elif body == b"silent":
                pass
            elif body.startswith(b"slow:"):
                ms = int(body[5:])
                delayed.append((now + ms / 1000.0, [ident, corr, b"echo:" + body]))
            else:
                sock.send_multipart([ident, corr, b"echo:" + body])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
