#!/usr/bin/env python3
"""Checks a macOS addon (a 64-bit Mach-O file) without macOS tools.

    python3 .ci/macho.py FILE x86_64|arm64

Exits non-zero unless FILE is a Mach-O dylib or bundle for that CPU that defines and exports
_napi_register_module_v1 (the entry point Node looks up), takes Node's napi_* functions from
the process (looked up with dlsym when Node loads it, or left undefined for the loader to bind)
rather than carrying any, and links nothing beyond the system's libraries.
Prints what it found.
"""
import struct
import sys

MH_MAGIC_64 = 0xFEEDFACF
CPU = {"x86_64": 0x01000007, "arm64": 0x0100000C}
MH_DYLIB, MH_BUNDLE = 6, 8
LC_SYMTAB = 0x2
LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB = 0xC, 0x80000018, 0x8000001F
N_EXT, N_TYPE, N_SECT, N_UNDF, N_STAB = 0x01, 0x0E, 0x0E, 0x00, 0xE0
SYSTEM = ("/usr/lib/", "/System/Library/")


def main(path, arch):
    data = open(path, "rb").read()
    magic, cputype, _sub, filetype, ncmds, _size, _flags, _res = struct.unpack_from("<IiiIIIII", data, 0)
    problems = []
    if magic != MH_MAGIC_64:
        sys.exit(f"{path}: not a 64-bit little-endian Mach-O file (magic {magic:#x})")
    if cputype != CPU[arch]:
        problems.append(f"CPU type {cputype:#x}, expected {CPU[arch]:#x} ({arch})")
    if filetype not in (MH_DYLIB, MH_BUNDLE):
        problems.append(f"file type {filetype}, expected a dylib ({MH_DYLIB}) or bundle ({MH_BUNDLE})")
    off = 32
    defined, undefined, dylibs = set(), set(), []
    for _ in range(ncmds):
        cmd, cmdsize = struct.unpack_from("<II", data, off)
        if cmd == LC_SYMTAB:
            symoff, nsyms, stroff, _strsize = struct.unpack_from("<IIII", data, off + 8)
            for i in range(nsyms):
                strx, ntype, _sect, _desc, _value = struct.unpack_from("<IBBHQ", data, symoff + 16 * i)
                if ntype & N_STAB:
                    continue
                end = data.index(b"\0", stroff + strx)
                name = data[stroff + strx:end].decode("utf-8", "replace")
                if ntype & N_TYPE == N_SECT and ntype & N_EXT:
                    defined.add(name)
                elif ntype & N_TYPE == N_UNDF and ntype & N_EXT:
                    undefined.add(name)
        elif cmd in (LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB):
            (name_off,) = struct.unpack_from("<I", data, off + 8)
            end = data.index(b"\0", off + name_off)
            dylibs.append(data[off + name_off:end].decode())
        off += cmdsize
    if "_napi_register_module_v1" not in defined:
        problems.append("_napi_register_module_v1 is not an exported symbol")
    napi_undefined = sorted(s for s in undefined if s.startswith("_napi_"))
    napi_defined = sorted(s for s in defined if s.startswith("_napi_") and s != "_napi_register_module_v1")
    if napi_defined:
        problems.append(f"defines N-API functions itself: {napi_defined[:5]}")
    if not napi_undefined and "_dlsym" not in undefined:
        problems.append("neither imports _napi_* symbols nor looks them up with _dlsym: N-API calls have nowhere to go")
    foreign = [d for d in dylibs if not d.startswith(SYSTEM)]
    if foreign:
        problems.append(f"links libraries outside the system's: {foreign}")
    print(f"{path}: Mach-O {arch} {'dylib' if filetype == MH_DYLIB else 'bundle'}, "
          f"exports _napi_register_module_v1: {'_napi_register_module_v1' in defined}, "
          f"{len(napi_undefined)} napi_* imports, dlsym: {'_dlsym' in undefined}, links {', '.join(dylibs)}")
    if problems:
        sys.exit(f"{path}: " + "; ".join(problems))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in CPU:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
