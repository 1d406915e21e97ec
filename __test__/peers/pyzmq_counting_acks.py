#!/usr/bin/env python3
"""A zerowire server as it was before client sessions, in pyzmq: it answers the hello with
{"clientId","serverPid"} (no "acks":"session") and acks each connection's fire-and-forget
messages as a cumulative count (8 bytes, u64 little-endian), 5 ms apart; it answers other
control requests (ping, goodbye, sequence marks) with an empty reply. A request "count" is
answered with the number of fire-and-forget messages read. Prints "ready <endpoint>"; exits
when its stdin closes.
"""
import sys
import threading

import zmq

from pyzmq_router import bind_router


def main():
    sock, endpoint = bind_router(sys.argv[1])
    print("ready " + endpoint, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), sock.close(linger=0)), daemon=True).start()
    counts = {}
    acked = {}
    total = 0
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while True:
        try:
            ready = dict(poller.poll(5))
        except zmq.ZMQError:
            return
        if sock in ready:
            identity, corr, body = sock.recv_multipart()[:3]
            if corr == b"":
                counts[identity] = counts.get(identity, 0) + 1
                total += 1
            elif corr[:2] == b"\x00H":
                sock.send_multipart([identity, corr, b'{"clientId":"0ld5e7e7","serverPid":1}'])
            elif corr[:1] == b"\x00":
                sock.send_multipart([identity, corr, b""])
            elif body == b"count":
                sock.send_multipart([identity, corr, str(total).encode()])
            else:
                sock.send_multipart([identity, corr, b"echo:" + body])
            continue
        for identity, n in counts.items():
            if acked.get(identity) != n:
                acked[identity] = n
                sock.send_multipart([identity, b"\x00A\x00\x00\x00\x00", n.to_bytes(8, "little")])


if __name__ == "__main__":
    main()
