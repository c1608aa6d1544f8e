"""Rust v0 symbol demangling (RFC 2603, ``_R...``), written from the published grammar.

Output follows rustc-demangle's default display without the crate disambiguator hashes:
``<std::sync::mpmc::Receiver<T>>::recv_timeout``, ``foo::bar::{closure#0}``, ``[u8; 4usize]``.
Input is untrusted: recursion depth, work and output length are bounded, and anything malformed
or over a limit gives ``None`` (the caller then keeps the mangled name).
"""

from __future__ import annotations

from collections.abc import Callable

_MAX_DEPTH = 200  # nested paths/types/backrefs; well under Python's own recursion limit
_MAX_OUT = 4096  # characters of demangled output
_MAX_STEPS = 20000  # grammar nodes visited (backrefs can re-visit text many times)

_BASIC_1 = ("i8", "bool", "char", "f64", "str", "f32", "u8", "isize", "usize", "i32")
_BASIC_2 = ("u32", "i128", "u128", "i16", "u16", "()", "...", "i64", "u64", "!", "_")
_BASIC = dict(zip("abcdefhijlmnostuvxyzp", _BASIC_1 + _BASIC_2, strict=True))
_UNSIGNED = frozenset("htmyoj")
_SIGNED = frozenset("aslxni")
_PATH_TAGS = frozenset("CNMXYIB")
_SPECIAL_NS = {"C": "closure", "S": "shim"}


class _Invalid(Exception):
    pass


class _Demangler:
    __slots__ = ("depth", "lt_depth", "out", "out_len", "pos", "printing", "s", "steps")

    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0
        self.out: list[str] = []
        self.out_len = 0
        self.printing = True
        self.depth = 0
        self.steps = 0
        self.lt_depth = 0  # lifetimes bound by enclosing `for<...>` binders

    # -- lexing -------------------------------------------------------------------------
    def peek(self) -> str:
        return self.s[self.pos] if self.pos < len(self.s) else ""

    def eat(self, c: str) -> bool:
        if self.pos < len(self.s) and self.s[self.pos] == c:
            self.pos += 1
            return True
        return False

    def next(self) -> str:
        if self.pos >= len(self.s):
            raise _Invalid
        c = self.s[self.pos]
        self.pos += 1
        return c

    def base62(self) -> int:
        """``_`` is 0, ``<digits>_`` is the base-62 value plus 1."""
        if self.eat("_"):
            return 0
        v = 0
        while True:
            c = self.next()
            if c == "_":
                return v + 1
            if "0" <= c <= "9":
                d = ord(c) - 48
            elif "a" <= c <= "z":
                d = ord(c) - 87
            elif "A" <= c <= "Z":
                d = ord(c) - 29
            else:
                raise _Invalid
            v = v * 62 + d
            if v >= 1 << 64:
                raise _Invalid

    def opt_base62(self, tag: str) -> int:
        return self.base62() + 1 if self.eat(tag) else 0

    def decimal(self) -> int:
        c = self.next()
        if c == "0":
            return 0
        if not "1" <= c <= "9":
            raise _Invalid
        v = ord(c) - 48
        while "0" <= self.peek() <= "9":
            v = v * 10 + ord(self.next()) - 48
            if v > len(self.s):
                raise _Invalid
        return v

    def hex_nibbles(self) -> str:
        start = self.pos
        while True:
            c = self.next()
            if c == "_":
                return self.s[start : self.pos - 1]
            if not ("0" <= c <= "9" or "a" <= c <= "f"):
                raise _Invalid

    def ident(self) -> tuple[str, str]:
        """(ascii, punycode) of an undisambiguated identifier."""
        is_puny = self.eat("u")
        n = self.decimal()
        self.eat("_")
        end = self.pos + n
        if end > len(self.s):
            raise _Invalid
        raw = self.s[self.pos : end]
        self.pos = end
        if not is_puny:
            return raw, ""
        cut = raw.rfind("_")
        ascii_part, puny = (raw[:cut], raw[cut + 1 :]) if cut >= 0 else ("", raw)
        if not puny:
            raise _Invalid
        return ascii_part, puny

    # -- printing -----------------------------------------------------------------------
    def emit(self, text: str) -> None:
        if self.printing:
            self.out_len += len(text)
            if self.out_len > _MAX_OUT:
                raise _Invalid
            self.out.append(text)

    def emit_ident(self, ident: tuple[str, str]) -> None:
        ascii_part, puny = ident
        if puny:
            self.emit(_punycode(ascii_part, puny))
        else:
            self.emit(ascii_part)

    def enter(self) -> None:
        self.depth += 1
        self.steps += 1
        if self.depth > _MAX_DEPTH or self.steps > _MAX_STEPS:
            raise _Invalid

    def backref(self, then: Callable[[], object]) -> None:
        start = self.pos - 1  # the `B` tag
        target = self.base62()
        if target >= start:
            raise _Invalid  # only strictly backwards, so no loops
        if not self.printing:
            return  # nothing to print, and the text there was already parsed once
        saved = self.pos
        self.pos = target
        then()
        self.pos = saved

    def lifetime(self, lt: int) -> None:
        if lt == 0:
            self.emit("'_")
            return
        depth = self.lt_depth - lt
        if depth < 0:
            raise _Invalid
        self.emit("'" + chr(97 + depth) if depth < 26 else f"'_{depth}")

    def binder(self, inner: Callable[[], object]) -> None:
        count = self.opt_base62("G")
        if count > 1000:
            raise _Invalid
        if count:
            self.emit("for<")
            for i in range(count):
                if i:
                    self.emit(", ")
                self.lt_depth += 1
                self.lifetime(1)
            self.emit("> ")
        inner()
        self.lt_depth -= count

    def sep_list(self, item: Callable[[], object], sep: str) -> int:
        n = 0
        while not self.eat("E"):
            if n:
                self.emit(sep)
            item()
            n += 1
        return n

    # -- grammar ------------------------------------------------------------------------
    def path(self, in_value: bool) -> None:
        self.enter()
        tag = self.next()
        if tag == "C":
            self.opt_base62("s")  # crate hash: parsed, not shown
            self.emit_ident(self.ident())
        elif tag == "N":
            ns = self.next()
            self.path(in_value)
            dis = self.opt_base62("s")
            ascii_part, puny = ident = self.ident()
            if "A" <= ns <= "Z":
                self.emit("::{" + _SPECIAL_NS.get(ns, ns))
                if ascii_part or puny:
                    self.emit(":")
                    self.emit_ident(ident)
                self.emit(f"#{dis}}}")
            elif "a" <= ns <= "z":
                if ascii_part or puny:
                    self.emit("::")
                    self.emit_ident(ident)
            else:
                raise _Invalid
        elif tag in "MXY":
            if tag != "Y":
                self.opt_base62("s")
                was, self.printing = self.printing, False
                self.path(False)  # the impl's own path is not shown
                self.printing = was
            self.emit("<")
            self.type_()
            if tag != "M":
                self.emit(" as ")
                self.path(False)
            self.emit(">")
        elif tag == "I":
            self.path(in_value)
            self.emit("::<" if in_value else "<")
            self.sep_list(self.generic_arg, ", ")
            self.emit(">")
        elif tag == "B":
            self.backref(lambda: self.path(in_value))
        else:
            raise _Invalid
        self.depth -= 1

    def generic_arg(self) -> None:
        if self.eat("L"):
            self.lifetime(self.base62())
        elif self.eat("K"):
            self.const(False)
        else:
            self.type_()

    def type_(self) -> None:
        self.enter()
        tag = self.next()
        basic = _BASIC.get(tag)
        if basic is not None:
            self.emit(basic)
        elif tag in "RQ":
            self.emit("&")
            if self.eat("L"):
                lt = self.base62()
                if lt:
                    self.lifetime(lt)
                    self.emit(" ")
            if tag == "Q":
                self.emit("mut ")
            self.type_()
        elif tag in "PO":
            self.emit("*const " if tag == "P" else "*mut ")
            self.type_()
        elif tag in "AS":
            self.emit("[")
            self.type_()
            if tag == "A":
                self.emit("; ")
                self.const(True)
            self.emit("]")
        elif tag == "T":
            self.emit("(")
            if self.sep_list(self.type_, ", ") == 1:
                self.emit(",")
            self.emit(")")
        elif tag == "F":
            self.binder(self.fn_sig)
        elif tag == "D":
            self.emit("dyn ")
            self.binder(lambda: self.sep_list(self.dyn_trait, " + "))
            if not self.eat("L"):
                raise _Invalid
            lt = self.base62()
            if lt:
                self.emit(" + ")
                self.lifetime(lt)
        elif tag == "B":
            self.backref(self.type_)
        elif tag in _PATH_TAGS:
            self.pos -= 1
            self.path(False)
        else:
            raise _Invalid
        self.depth -= 1

    def fn_sig(self) -> None:
        if self.eat("U"):
            self.emit("unsafe ")
        if self.eat("K"):
            if self.eat("C"):
                abi = "C"
            else:
                abi, puny = self.ident()
                if not abi or puny:
                    raise _Invalid
                abi = abi.replace("_", "-")
            self.emit(f'extern "{abi}" ')
        self.emit("fn(")
        self.sep_list(self.type_, ", ")
        self.emit(")")
        if not self.eat("u"):  # a `()` return is not shown
            self.emit(" -> ")
            self.type_()

    def dyn_trait(self) -> None:
        open_ = self.path_open_generics()
        while self.eat("p"):
            self.emit(", " if open_ else "<")
            open_ = True
            self.emit_ident(self.ident())
            self.emit(" = ")
            self.type_()
        if open_:
            self.emit(">")

    def path_open_generics(self) -> bool:
        """A trait path whose generic list is left open so `Item = T` bindings can join it."""
        self.enter()
        if self.eat("B"):
            start = self.pos - 1
            target = self.base62()
            if target >= start:
                raise _Invalid
            result = False
            if self.printing:
                saved, self.pos = self.pos, target
                result = self.path_open_generics()
                self.pos = saved
        elif self.eat("I"):
            self.path(False)
            self.emit("<")
            self.sep_list(self.generic_arg, ", ")
            result = True
        else:
            self.path(False)
            result = False
        self.depth -= 1
        return result

    def const(self, in_value: bool) -> None:
        self.enter()
        tag = self.next()
        if tag == "p":
            self.emit("_")
        elif tag in _UNSIGNED or tag in _SIGNED:
            if tag in _SIGNED and self.eat("n"):
                self.emit("-")
            self.emit(_uint(self.hex_nibbles()) + _BASIC[tag])
        elif tag == "b":
            v = _uint_value(self.hex_nibbles())
            if v not in (0, 1):
                raise _Invalid
            self.emit("true" if v else "false")
        elif tag == "c":
            v = _uint_value(self.hex_nibbles())
            if v is None or v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                raise _Invalid
            self.emit(_char_literal(chr(v)))
        elif tag == "B":
            self.backref(lambda: self.const(in_value))
        else:
            raise _Invalid  # str/ref/array/tuple/ADT const values: not handled
        self.depth -= 1


def _uint_value(nibbles: str) -> int | None:
    nibbles = nibbles.lstrip("0")
    if len(nibbles) > 16:
        return None
    return int(nibbles, 16) if nibbles else 0


def _uint(nibbles: str) -> str:
    v = _uint_value(nibbles)
    return str(v) if v is not None else "0x" + nibbles.lstrip("0")


def _char_literal(c: str) -> str:
    escaped = {"'": "\\'", "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"}
    if c in escaped:
        body = escaped[c]
    elif c.isprintable():
        body = c
    else:
        body = f"\\u{{{ord(c):x}}}"
    return f"'{body}'"


def _punycode(ascii_part: str, puny: str) -> str:
    """Decode RFC 3492 punycode (v0 uses `_` where punycode uses `-`); raw text if it fails."""
    try:
        text = (ascii_part + "-" + puny) if ascii_part else puny
        return text.encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, OverflowError):
        return f"punycode{{{ascii_part}-{puny}}}" if ascii_part else f"punycode{{{puny}}}"


def demangle_v0(name: str) -> str | None:
    """The readable form of a Rust v0 symbol, or None when ``name`` is not a valid one."""
    if name.startswith("_R"):
        s = name[2:]
    elif name.startswith("__R"):
        s = name[3:]
    elif name.startswith("R"):
        s = name[1:]
    else:
        return None
    if not s or not s.isascii() or not s[0].isupper():
        return None  # a leading digit is an encoding version: only the unversioned one exists
    d = _Demangler(s)
    try:
        d.path(True)
        if d.peek() and d.peek() in _PATH_TAGS:
            d.printing = False
            d.path(False)  # instantiating crate: not shown
        rest = s[d.pos :]
        if rest and rest[0] not in ".$":
            return None  # anything but a vendor suffix is garbage
    except (_Invalid, RecursionError):  # RecursionError: a caller already deep in its stack
        return None
    return "".join(d.out)
