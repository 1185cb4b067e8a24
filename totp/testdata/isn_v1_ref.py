#!/usr/bin/env python3
"""An independent ISN-v1 implementation, written from docs/design.md alone.

Usage: isn_v1_ref.py KEY_B64 PORT COUNTER SLOT [REALM]
Prints the decimal ISN. Used by tests to check the Go code and the seqknock
binary on inputs that are not in the table of test vectors.
"""
import base64, hashlib, hmac, struct, sys

def isn(key, realm, port, counter, slot):
    r = realm.encode("utf-8")
    msg = b"seqknock/isn/v1" + bytes([len(r)]) + r + struct.pack(">HQB", port, counter, slot)
    v = struct.unpack(">I", hmac.new(key, msg, hashlib.sha256).digest()[:4])[0]
    return v or 1

if __name__ == "__main__":
    key = base64.b64decode(sys.argv[1], validate=True)
    realm = sys.argv[5] if len(sys.argv) > 5 else ""
    print(isn(key, realm, int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
