"""Rust v0 demangling. Expected strings are derived by hand from the v0 grammar (RFC 2603);
offsets in comments count from the first character after ``_R``. A last test checks a set of
names against GNU c++filt (libiberty's own Rust v0 demangler) when it is installed."""

from __future__ import annotations

import random
import re
import shutil
import string
import subprocess

import pytest

from processors.symbolize.demangle import demangle
from processors.symbolize.rust_v0 import demangle_v0

CASES = [
    # N v <M s2_ <impl-path C..bash_tool_backend> <type N t B5_ 8Terminal>> 4call.
    # B5_ is base62 "5" + 1 = offset 6, the `C` crate root. Inherent impl -> `<Type>::name`.
    (
        "_RNvMs2_Cs6ygKICNz7jq_17bash_tool_backendNtB5_8Terminal4call",
        "<bash_tool_backend::Terminal>::call",
    ),
    # I <value path std::sys::backtrace::__rust_begin_short_backtrace> args E, then the
    # instantiating crate (not shown). `28_` + 28 bytes: the `_` separates a name starting
    # with `_`. Args: `FEu` = fn() (no params, unit return hidden), `u` = (). A value path
    # shows generics as `::<...>`.
    (
        "_RINvNtNtCsalM65ksrrJu_3std3sys9backtrace28___rust_begin_short_backtrace"
        "FEuuECs6ygKICNz7jq_17bash_tool_backend",
        "std::sys::backtrace::__rust_begin_short_backtrace::<fn(), ()>",
    ),
    ("_RNvNtCsalM65ksrrJu_3std2rt19lang_start_internal", "std::rt::lang_start_internal"),
    # Inherent impl on std::sync::mpmc::Receiver<T> with T a 3-tuple; B9_ -> offset 10 (std
    # crate root), B22_ -> 2*62+2+1 = 127, the `NtNtCs..5alloc6string6String` type, so the
    # Option holds a String. A type path shows generics as `<...>` (no `::`).
    (
        "_RNvMsg_NtNtCsalM65ksrrJu_3std4sync4mpmcINtB5_8ReceiverTINtNtNtNtB9_2io8buffered"
        "9bufreader9BufReaderNtNtB9_7process11ChildStdoutENtNtCsdvUtd6l8NKU_5alloc6string"
        "6StringINtNtCs69J8RPIbxSR_4core6option6OptionB22_EEE12recv_timeout"
        "Cs6ygKICNz7jq_17bash_tool_backend",
        "<std::sync::mpmc::Receiver<(std::io::buffered::bufreader::BufReader<"
        "std::process::ChildStdout>, alloc::string::String, "
        "core::option::Option<alloc::string::String>)>>::recv_timeout",
    ),
    # Closure namespace `C` -> `{closure#<disambiguator>}`: none = 0, `s_` = 1.
    ("_RNCNvCs1234_7mycrate4main0B3_", "mycrate::main::{closure#0}"),
    ("_RNCNvCs1234_7mycrate4mains_0B3_", "mycrate::main::{closure#1}"),
    # Shim namespace `S` with a name -> `{shim:name#0}`.
    ("_RNSNvCs1_7mycrate3foo6vtable", "mycrate::foo::{shim:vtable#0}"),
    # Trait impl X <impl-path> <type> <trait> -> `<Type as Trait>`; B4_ -> offset 5 (crate).
    (
        "_RNvXs_Cs1234_7mycrateNtB4_3FooNtNtCs5678_4core3fmt7Display3fmt",
        "<mycrate::Foo as core::fmt::Display>::fmt",
    ),
    # Trait definition Y <type> <trait>. Offsets N0 v1 Y2 N3 t4 C5: B4_ -> 5, the crate root;
    # B2_ -> 3 would be the type path `mycrate::Foo` itself.
    ("_RNvYNtCs1234_7mycrate3FooNtB4_5Trait3foo", "<mycrate::Foo as mycrate::Trait>::foo"),
    ("_RNvYNtCs1234_7mycrate3FooNtB2_5Trait3foo", "<mycrate::Foo as mycrate::Foo::Trait>::foo"),
    # Refs (erased lifetime `L_` is not shown) and raw pointers.
    ("_RINvCs1_1c3fooRL_hQmPaOxEB2_", "c::foo::<&u8, &mut u32, *const i8, *mut i64>"),
    # Array with a typed-integer const (0x10 = 16, suffix as rustc-demangle prints it), slice,
    # tuples: a 1-tuple keeps its comma, `TE` is ().
    (
        "_RINvCs1_1c3fooAhj10_SbTcdeETfETEEB2_",
        "c::foo::<[u8; 16usize], [bool], (char, f64, str), (f32,), ()>",
    ),
    # fn pointers: unsafe, extern "C" (`KC`), other ABI idents with `_` -> `-`, return types.
    (
        "_RINvCs1_1c3fooFUKCmEuFK8rust_calmEuFmEyEB2_",
        'c::foo::<unsafe extern "C" fn(u32), extern "rust-cal" fn(u32), fn(u32) -> u64>',
    ),
    # Binder G0_ = 2 lifetimes: L1_ is the innermost bound one ('a), L0_... index 2 -> 'b.
    ("_RINvCs1_1c3fooFG0_RL1_hRL0_tEuEB2_", "c::foo::<for<'a, 'b> fn(&'a u8, &'b u16)>"),
    # dyn: plain trait; binder + generic trait with an associated-type binding `p`; two traits.
    (
        "_RINvCs1_1c3fooDNtB2_3AnyEL_DG_INtB2_2FnTRL0_hEEp6OutputlEL_DNtB2_1ANtB2_1BEL_EB2_",
        "c::foo::<dyn c::Any, dyn for<'a> c::Fn<(&'a u8,), Output = i32>, dyn c::A + c::B>",
    ),
    # Consts: placeholder, bool, chars (escaped like Rust's Debug), negative i8 0xf = -15,
    # u128 too big for u64 printed as hex, usize zero; `L_` lifetime arg -> '_.
    (
        "_RINvCs1_1c3fooKpKb1_Kb0_Kc41_Kc27_Kc1f600_Kanf_Ko0123456789abcdef0123456789_Kj0_L_EB2_",
        "c::foo::<_, true, false, 'A', '\\'', '\U0001f600', -15i8, "
        "0x123456789abcdef0123456789u128, 0usize, '_>",
    ),
    # Inherent impl on a const-generic type.
    ("_RNvMNtCs1_1c1aINtB4_3FooKj2_E3bar", "<c::Foo<2usize>>::bar"),
    # Punycode: `u7caf_dma` = ascii "caf" + delta "dma" -> café.
    ("_RNvNtCs1_1cu7caf_dma3foo", "c::café::foo"),
    # Vendor suffix ignored; `R` and `__R` prefixes.
    ("_RNvCs1_1c3foo.llvm.123", "c::foo"),
    ("__RNvCs1_1c3foo", "c::foo"),
    ("RNvCs1_1c3foo", "c::foo"),
]


@pytest.mark.parametrize(("mangled", "expected"), CASES)
def test_v0(mangled: str, expected: str) -> None:
    assert demangle_v0(mangled) == expected
    assert demangle(mangled) == expected


BAD = [
    "_R",
    "_RNvCs1_1c",  # Nv without its name
    "_RNvCs1_1c3fo",  # identifier longer than the input
    "_RNvCs1_1c3foo1_",  # garbage after the path
    "_RNvNvCs1_1c3foo1_",  # `1_` promises one byte after the separator
    "_RB_",  # backref to itself
    "_RNvCsZZZZZZZZZZZZZZZ_1c3foo",  # base-62 overflow
    "_R0NvCs1_1c3foo",  # encoding version
    "_RINvCs1_1c3fooKcd800_EB2_",  # surrogate char const
    "_RINvCs1_1c3fooKb2_EB2_",  # bool const 2
    "_RINvCs1_1c3fooKanF_EB2_",  # hex digits are lowercase
    "_RINvCs1_1c3fooRL1_hEB2_",  # lifetime index with no binder
    "_RINvCs1_1c3fooDNtB2_3AnyEEB2_",  # dyn without its lifetime
    "_RNvCs1_1c3foo\u00e9",  # not ASCII
    "RSA_new",  # a C name that merely starts with R
    "Rust",
]


@pytest.mark.parametrize("mangled", BAD)
def test_malformed_unchanged(mangled: str) -> None:
    assert demangle_v0(mangled) is None
    assert demangle(mangled) == mangled


@pytest.mark.parametrize("mangled", [CASES[0][0], CASES[2][0], CASES[7][0], CASES[8][0]])
def test_truncated_unchanged(mangled: str) -> None:
    # These end with the last name of the outermost `N` path, so every proper prefix is
    # missing part of it.
    for end in range(len(mangled)):
        assert demangle(mangled[:end]) == mangled[:end]


def _b62_backref(pos: int) -> str:
    if pos == 0:
        return "B_"
    digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n, out = pos - 1, ""
    while True:
        out = digits[n % 62] + out
        n //= 62
        if n == 0:
            return "B" + out + "_"


def test_exponential_backrefs_unchanged_quickly() -> None:
    # Each tuple holds two backrefs to the previous one, so the text doubles 60 times.
    body = "INvCs_1c1fu"
    prev = len(body) - 1
    for _ in range(60):
        here = len(body)
        body += "T" + _b62_backref(prev) * 2 + "E"
        prev = here
    body += "E"
    # Expanded, this would never return (the suite's timeout would fail it); how long the
    # refusal takes is a speed figure: benchmarks/demangle.py.
    assert demangle_v0("_R" + body) is None


def test_deep_nesting_unchanged_quickly() -> None:
    deep = "_R" + "Nv" * 5000 + "C1c" + "1a" * 5000
    refs = "_RINvCs_1c1f" + "R" * 5000 + "uE"
    assert demangle_v0(deep) is None  # cost per refusal: benchmarks/demangle.py
    assert demangle_v0(refs) is None


def test_mutated_names_never_raise() -> None:
    # Seeded random edits of the valid names: each result is a string, never an exception.
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "_"
    for _ in range(3000):
        chars = list(rng.choice(CASES)[0])
        for _ in range(rng.randint(1, 3)):
            j = rng.randrange(2, len(chars))
            op = rng.random()
            if op < 0.4:
                chars[j] = rng.choice(alphabet)
            elif op < 0.7:
                chars.insert(j, rng.choice(alphabet))
            else:
                del chars[j]
        name = "".join(chars)
        out = demangle_v0(name)
        assert out is None or isinstance(out, str)


def test_undecodable_punycode_kept_raw() -> None:
    # "99999999" decodes to a code point beyond Unicode, so the raw text stays.
    assert demangle_v0("_RNvNtCs1_1cu8_999999993foo") == "c::punycode{99999999}::foo"


def test_other_schemes_untouched() -> None:
    assert demangle("_ZN3foo3bar17h0123456789abcdefE") == "foo::bar"
    assert demangle("main") == "main"


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="c++filt (binutils) not installed")
def test_agrees_with_cxxfilt() -> None:
    # libiberty prints crate hashes as `[hex]` and integer consts as `16: usize`, so only
    # names without integer consts are compared, hashes stripped; it knows only `_R`.
    int_const = re.compile(r"\d[iu](8|16|32|64|128|size)\b")
    names = [m for m, want in CASES if m[:2] == "_R" and not int_const.search(want)]
    res = subprocess.run(
        ["c++filt"], input="\n".join(names) + "\n", capture_output=True, text=True, check=True
    )
    theirs = [re.sub(r"\[[0-9a-f]+\]", "", line) for line in res.stdout.splitlines()]
    assert [demangle(n) for n in names] == theirs
