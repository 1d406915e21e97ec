#!/usr/bin/env python3
"""A libzmq CURVE DEALER (pyzmq) that speaks only the two-frame envelope of docs/PROTOCOL.md.

Usage: pyzmq_curve_dealer.py ENDPOINT SERVER_PUBLIC_KEY [PUBLIC_KEY SECRET_KEY]
SERVER_PUBLIC_KEY "-" makes it a plaintext (NULL) DEALER. Without a key pair it makes one
with libzmq's zmq_curve_keypair. Sends 100 fire-and-forget bodies {"type":"log","n":i}, then
one request {"type":"who"} with corr b"\\x01py01", waits for the reply (3 s) and prints JSON on
stdout: {"publicKey": its key, "body": the reply} or {"publicKey": …, "error": "no reply"}.
"""
import json
import sys

import zmq


def main():
    endpoint, server_key = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 4:
        public, secret = sys.argv[3].encode(), sys.argv[4].encode()
    else:
        public, secret = zmq.curve_keypair()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 2000
    if server_key != "-":
        sock.curve_serverkey = server_key.encode()
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    sock.connect(endpoint)
    for i in range(100):
        sock.send_multipart([b"", json.dumps({"type": "log", "n": i}).encode()])
    sock.send_multipart([b"\x01py01", b'{"type":"who"}'])
    out = {"publicKey": public.decode()}
    if sock.poll(3000):
        frames = sock.recv_multipart()
        out["corr"] = frames[0].hex()
        out["body"] = frames[1].decode()
    else:
        out["error"] = "no reply"
    print(json.dumps(out), flush=True)
    sock.close(linger=0)
    ctx.term()


if __name__ == "__main__":
    main()
