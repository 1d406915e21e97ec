#!/usr/bin/env python3
"""Two libzmq DEALERs (pyzmq) announcing the same ZMQ_ROUTING_ID: a routing-id takeover try.

Usage: pyzmq_same_routing_id.py ENDPOINT ROUTING_ID
The first (the victim, which does not reconnect) connects and sends b"victim", then waits (5 s) for one message. The
second (the thief) then connects with the same id, sends b"thief" and prints THIEF on
stdout. Both then count what they receive until the victim gets b"end" (5 s), and the
counts are printed as JSON: {"victim": n, "thief": m} (b"end" not counted).
"""
import json
import sys
import time

import zmq


def main():
    endpoint, routing_id = sys.argv[1], sys.argv[2].encode()
    ctx = zmq.Context()
    victim = ctx.socket(zmq.DEALER)
    victim.routing_id = routing_id
    victim.linger = 0
    # No reconnect: a takeover that closes the victim's connection must show, not be undone
    # by the victim reconnecting and taking its id back.
    victim.reconnect_ivl = -1
    victim.connect(endpoint)
    victim.send(b"victim")
    if not victim.poll(5000):
        print(json.dumps({"error": "victim never heard"}), flush=True)
        sys.exit(1)
    victim.recv()

    thief = ctx.socket(zmq.DEALER)
    thief.routing_id = routing_id
    thief.linger = 0
    thief.connect(endpoint)
    thief.send(b"thief")
    # Let libzmq's I/O thread complete (or be refused) the thief's handshake.
    time.sleep(0.3)
    print("THIEF", flush=True)

    counts = {"victim": 0, "thief": 0}
    poller = zmq.Poller()
    poller.register(victim, zmq.POLLIN)
    poller.register(thief, zmq.POLLIN)
    deadline = time.monotonic() + 5
    done = False
    while not done and time.monotonic() < deadline:
        for sock, _ in poller.poll(100):
            name = "victim" if sock is victim else "thief"
            body = sock.recv()
            if body == b"end" and name == "victim":
                done = True
            elif body != b"end":
                counts[name] += 1
    if not done:
        counts["error"] = "no end"
    print(json.dumps(counts), flush=True)
    victim.close()
    thief.close()
    ctx.term()


if __name__ == "__main__":
    main()
