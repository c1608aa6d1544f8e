"""Demangling: C++ (Itanium) through libstdc++'s ``__cxa_demangle`` via ctypes, Rust legacy
(``_ZN...17h<hash>E``) by hand with the hash dropped, Rust v0 (``_R...``) by hand in rust_v0.py
with the crate hashes dropped."""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from functools import lru_cache

from processors.symbolize.rust_v0 import demangle_v0

_RUST_HASH = re.compile(r"h[0-9a-f]{16}")
_RUST_ESCAPES = {
    "SP": "@",
    "BP": "*",
    "RF": "&",
    "LT": "<",
    "GT": ">",
    "LP": "(",
    "RP": ")",
    "C": ",",
}


def _load_cxa() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    for name in ("libstdc++.so.6", ctypes.util.find_library("stdc++")):
        if not name:
            continue
        try:
            fn = ctypes.CDLL(name).__cxa_demangle
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_void_p
        fn.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int),
        ]
        return fn
    return None


_cxa = _load_cxa()
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]


def _cxx(name: str) -> str:
    if _cxa is None:
        return name
    status = ctypes.c_int(0)
    ptr = _cxa(name.encode(), None, None, ctypes.byref(status))
    if not ptr or status.value != 0:
        return name
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        _libc.free(ptr)


def _rust_legacy(name: str) -> str | None:
    """``_ZN3foo3bar17h0123456789abcdefE`` -> ``foo::bar``; None if not Rust legacy."""
    body = name[3:]
    parts: list[str] = []
    pos = 0
    while pos < len(body) and body[pos] != "E":
        n = 0
        start = pos
        while pos < len(body) and body[pos].isdigit():
            n = n * 10 + ord(body[pos]) - 48
            pos += 1
        if pos == start or pos + n > len(body):
            return None
        parts.append(body[pos : pos + n])
        pos += n
    if pos != len(body) - 1 or len(parts) < 2 or not _RUST_HASH.fullmatch(parts[-1]):
        return None
    return "::".join(_rust_ident(p) for p in parts[:-1])


def _rust_ident(ident: str) -> str:
    if ident.startswith("_$"):
        ident = ident[1:]
    out = []
    i = 0
    while i < len(ident):
        c = ident[i]
        if c == "$":
            end = ident.find("$", i + 1)
            if end < 0:
                out.append(ident[i:])
                break
            code = ident[i + 1 : end]
            if code in _RUST_ESCAPES:
                out.append(_RUST_ESCAPES[code])
            elif code.startswith("u"):
                try:
                    out.append(chr(int(code[1:], 16)))
                except ValueError:
                    out.append(ident[i : end + 1])
            else:
                out.append(ident[i : end + 1])
            i = end + 1
        elif ident.startswith("..", i):
            out.append("::")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


@lru_cache(maxsize=8192)
def demangle(name: str) -> str:
    """The readable form of a symbol name, or the name itself when it is not mangled."""
    if name.startswith("_ZN") and name.endswith("E"):
        rust = _rust_legacy(name)
        if rust is not None:
            return rust
    if name.startswith("_Z"):
        return _cxx(name)
    if name.startswith(("_R", "R", "__R")):
        return demangle_v0(name) or name
    return name
