#!/usr/bin/env bash
# Portable Linux wheels, built and checked here (`make wheels`).
#
#   1. builds, with maturin's zig support (zig from PyPI's `ziglang` is the C
#      compiler and linker, so no manylinux container is needed), stripped
#      release wheels into dist/:
#        manylinux2014 x86_64   (always: the x86_64-unknown-linux-gnu target)
#        manylinux2014 aarch64  (if the Rust target can be had)
#        musllinux_1_2 x86_64   (if the Rust target can be had)
#      A Rust target that is neither installed nor fetchable with
#      `rustup target add` costs its wheel, said in one line, not the run.
#   2. checks every wheel: its platform tag is the portable one asked for,
#      `auditwheel show` agrees (for manylinux: nothing stricter than
#      manylinux2014, i.e. glibc 2.17), the extension carries no symbol table
#      (stripped), and METADATA has the project's Project-URLs.
#   3. installs the x86_64 glibc wheel into a fresh virtualenv per CPython
#      3.10-3.13 found (pyenv, or python3.1x on PATH) with only pytest,
#      pytest-asyncio and hypothesis, and runs a smoke subset of the test suite
#      against it from a directory outside the source tree.
#
# Usage: scripts/wheels.sh                 build, check, smoke-test
#        scripts/wheels.sh --stage-smoke DIR
#            copy the smoke subset (and the files it needs) into DIR/tests and
#            print the test paths, relative to DIR; the release workflow uses
#            this on Linux, macOS and Windows so the subset is listed once.
#
# Environment: VENV (default .venv: the tool virtualenv with maturin, which
# `make venv` makes; ziglang and auditwheel are added to it), WHEELS_DIST
# (default dist), CARGO_TARGET_DIR as cargo reads it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# The smoke subset: tests that need no server (Redis, PostgreSQL) and no web
# framework or event loop beyond asyncio; they import only pytest, hypothesis
# and the package. conftest.py comes with them (the `clock` fixture, and the
# CI rule that a skip fails); it imports the two server helpers, which import
# only the standard library and pytest and start nothing at import.
SMOKE_TESTS=(
    test_seed.py
    test_algorithms.py
    test_vectors.py
    test_bad_input.py
    test_keys.py
    test_decorator.py
    test_policy.py
    test_concurrency.py
)
SMOKE_SUPPORT=(conftest.py redis_server.py pg_server.py)
# What the smoke virtualenvs get besides the wheel (bounds as in pyproject.toml).
SMOKE_DEPS=("pytest>=8" "pytest-asyncio>=0.24" "hypothesis>=6.100")

# Copy the smoke subset into $1/tests, keeping the layout the tests expect
# (test_vectors.py reads ../vectors/decisions.json), and print the test paths.
stage_smoke() {
    local dest=$1 f
    mkdir -p "$dest/tests/python" "$dest/tests/vectors"
    for f in "${SMOKE_SUPPORT[@]}" "${SMOKE_TESTS[@]}"; do
        cp "$repo/tests/python/$f" "$dest/tests/python/"
    done
    cp "$repo/tests/vectors/decisions.json" "$dest/tests/vectors/"
    for f in "${SMOKE_TESTS[@]}"; do
        echo "tests/python/$f"
    done
}

if [ "${1:-}" = "--stage-smoke" ]; then
    [ $# -eq 2 ] || { echo "usage: $0 --stage-smoke DIR" >&2; exit 2; }
    stage_smoke "$2"
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: $0 [--stage-smoke DIR]" >&2; exit 2; }

started=$SECONDS
venv=${VENV:-.venv}
tools_py="$repo/$venv/bin/python"
[ "${venv#/}" != "$venv" ] && tools_py="$venv/bin/python"
dist=${WHEELS_DIST:-$repo/dist}
work=$(mktemp -d "${TMPDIR:-/tmp}/wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ! -x "$(dirname "$tools_py")/maturin" ]; then
    echo "no maturin in $venv: run 'make wheels' (it makes the virtualenv first)" >&2
    exit 1
fi

echo "== tools: zig (PyPI ziglang) and auditwheel into $venv"
"$tools_py" -m pip install -q --disable-pip-version-check "ziglang>=0.13,<0.18" "auditwheel>=6.1,<7"
maturin=$(dirname "$tools_py")/maturin
# maturin (through cargo-zigbuild) runs zig as `python -m ziglang`: point it at
# the virtualenv's interpreter rather than whatever python3 is on PATH.
export CARGO_ZIGBUILD_PYTHON_PATH=$tools_py
# The binding's build script asks an interpreter about the ABI; an abi3 build
# only needs any CPython >= 3.10.
export PYO3_PYTHON=${PYO3_PYTHON:-$tools_py}
echo "maturin $("$maturin" --version | awk '{print $2}'), zig $("$tools_py" -m ziglang version)," \
    "auditwheel $("$tools_py" -c 'import importlib.metadata as m; print(m.version("auditwheel"))')"

# CPython 3.10-3.13 on this machine: the newest pyenv build of each minor
# (pyenv root, or ~/.pyenv without the pyenv command), else python3.1x on PATH.
find_python() {
    local minor=$1 root="" v
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
    elif [ -d "$HOME/.pyenv/versions" ]; then
        root=$HOME/.pyenv
    fi
    if [ -n "$root" ]; then
        v=$(for d in "$root/versions/3.${minor}."*; do basename "$d"; done \
            | grep -E "^3\.${minor}\.[0-9]+$" | sort -V | tail -n 1 || true)
        if [ -n "$v" ] && [ -x "$root/versions/$v/bin/python3" ]; then
            echo "$root/versions/$v/bin/python3"
            return
        fi
    fi
    command -v "python3.${minor}" || true
}
pythons=()
for minor in 10 11 12 13; do
    py=$(find_python "$minor")
    if [ -n "$py" ] && "$py" -c 'import sys' >/dev/null 2>&1; then
        pythons+=("$py")
    else
        echo "CPython 3.${minor}: not on this machine"
    fi
done
[ ${#pythons[@]} -gt 0 ] || { echo "no CPython 3.10-3.13 found" >&2; exit 1; }

# abi3 or not is the project's choice (pyo3's features in Cargo.toml): an abi3
# build makes one wheel for every CPython >= 3.10; otherwise one wheel per
# interpreter found. (Non-abi3 cross builds name the interpreters and let
# maturin use its bundled sysconfig for the target.)
if grep -Eq '^pyo3 *=.*"abi3' Cargo.toml; then
    abi3=1
    echo "pyo3 builds abi3 (Cargo.toml): one wheel per platform"
else
    abi3=0
    echo "pyo3 does not build abi3: one wheel per platform and interpreter"
fi

# Is the Rust target installed, or can rustup fetch it? Asked once per target;
# on failure, prints why on stdout and returns 1.
have_target() {
    local target=$1 err
    if [ "$target" = "$(rustc -vV | sed -n 's/^host: //p')" ] \
        || rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        return 0
    fi
    if ! command -v rustup >/dev/null 2>&1; then
        echo "rustup is not installed, and the Rust target $target is not either"
        return 1
    fi
    if err=$(timeout 120 rustup target add "$target" 2>&1); then
        echo "   (rustup target add $target: fetched)" >&2
        return 0
    fi
    echo "the Rust target $target is not installed and 'rustup target add' failed:" \
        "$(printf '%s\n' "$err" | grep -v '^info:' | head -n 1)"
    return 1
}

# Check one built wheel; prints one verdict line (or what failed) and returns
# non-zero on failure. Arguments: wheel, expected platform tag (the PEP 600 /
# 656 name, e.g. manylinux_2_17_x86_64), and whether the wheel is for this
# machine (host) or another (its libraries are then not looked up here).
check_wheel() {
    local wheel=$1 want=$2 where=$3 report ldpaths=()
    if [ "$where" = foreign ]; then
        # auditwheel would resolve a foreign wheel's libraries against this
        # machine's (musl's libc.so is a linker script on glibc, and fails
        # it): search an empty directory; libc and friends are whitelisted.
        mkdir -p "$work/no-libs"
        ldpaths=(--ldpaths "$work/no-libs")
    fi
    report=$work/auditwheel.json
    if ! "$tools_py" -m auditwheel show --json "${ldpaths[@]}" "$wheel" >"$report" 2>"$work/auditwheel.err"; then
        echo "auditwheel show failed on $(basename "$wheel"):"
        cat "$work/auditwheel.err"
        return 1
    fi
    "$tools_py" - "$wheel" "$want" "$report" <<'PY'
import io
import json
import re
import sys
import zipfile
from email.parser import Parser

from elftools.elf.elffile import ELFFile  # pyelftools, auditwheel's own dependency

wheel, want, report = sys.argv[1:]
name = wheel.rsplit("/", 1)[-1]
problems = []

# 1. The file name and WHEEL carry the portable tag asked for.
platform_tags = name[: -len(".whl")].split("-")[-1].split(".")
if want not in platform_tags:
    problems.append(f"platform tags {platform_tags}, expected {want}")

# 2. auditwheel's reading of the binary. manylinux: the tag it derives from
# the versioned symbols and libraries must be manylinux_2_Y with Y <= 17 (no
# stricter than manylinux2014). musllinux: the symbol tag must be musllinux_1_Y
# with Y <= 2. zig links musl's libc under the name `libc.so` (upstream musl's
# own name for it); auditwheel only whitelists Alpine's `libc.musl-<arch>.so.1`
# and so calls that an external library. musl's loader serves every `libc.*`
# name itself, so that one library is accepted, and nothing else.
audit = json.load(open(report))
family, major, minor, arch = re.fullmatch(r"(manylinux|musllinux)_(\d+)_(\d+)_(\w+)", want).groups()
ceiling = (int(major), int(minor))


def within(tag: str) -> bool:
    m = re.fullmatch(rf"{family}_(\d+)_(\d+)_{arch}", tag)
    return bool(m) and (int(m[1]), int(m[2])) <= ceiling


if family == "manylinux":
    verdict = audit["overall_tag"]
    if not within(verdict):
        problems.append(f"auditwheel: {verdict}, stricter than {want} (or not manylinux)")
else:
    verdict = audit["sym_tag"]
    external = sorted(audit["external_libs"])
    if not within(verdict):
        problems.append(f"auditwheel: symbols need {verdict}, stricter than {want}")
    if external not in ([], ["libc.so"]):
        problems.append(f"auditwheel: external libraries {external}")
    if external:
        verdict += " (its one external library is libc.so: musl's libc as zig names it)"

with zipfile.ZipFile(wheel) as zf:
    # 3. Stripped: no extension module keeps a symbol table.
    for member in zf.namelist():
        if member.endswith(".so"):
            elf = ELFFile(io.BytesIO(zf.read(member)))
            if elf.get_section_by_name(".symtab") is not None:
                problems.append(f"{member} is not stripped (.symtab present)")
    # 4. The Project-URLs of pyproject.toml made it into METADATA.
    meta_name = next(m for m in zf.namelist() if m.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(zf.read(meta_name).decode())
    labels = {url.split(",", 1)[0].strip() for url in meta.get_all("Project-URL") or []}
    missing = {"Homepage", "Source", "Issues", "Documentation", "Changelog"} - labels
    if missing:
        problems.append(f"METADATA lacks Project-URL {sorted(missing)}")

if problems:
    print(f"{name}: FAILED")
    for p in problems:
        print(f"   {p}")
    sys.exit(1)
print(f"{name}: auditwheel {verdict}; stripped; Project-URLs {sorted(labels)}")
PY
}

# ---- 1. build and 2. check -------------------------------------------------
# target | maturin --compatibility | expected tag | host or foreign
targets=(
    "x86_64-unknown-linux-gnu|manylinux2014|manylinux_2_17_x86_64|host"
    "aarch64-unknown-linux-gnu|manylinux2014|manylinux_2_17_aarch64|foreign"
    "x86_64-unknown-linux-musl|musllinux_1_2|musllinux_1_2_x86_64|foreign"
)
mkdir -p "$dist"
rm -f "$dist"/*.whl
built=()
verdicts=()
cannot=()
failed=()
for spec in "${targets[@]}"; do
    IFS='|' read -r target compat want where <<<"$spec"
    label="$compat ${target%%-*}"
    echo "== wheel $label ($target)"
    if ! why=$(have_target "$target"); then
        [ "$target" = x86_64-unknown-linux-gnu ] && { echo "$why" >&2; exit 1; }
        echo "cannot build the $label wheel here: $why"
        cannot+=("$label: $why")
        continue
    fi
    interpreters=()
    if [ "$abi3" = 0 ]; then
        if [ "$where" = host ]; then
            interpreters=(-i "${pythons[@]}")
        else
            interpreters=(-i python3.10 python3.11 python3.12 python3.13)
        fi
    fi
    out=$work/out/$target
    t0=$SECONDS
    # --release: the release profile (fat LTO); --strip: no symbol table;
    # --zig: zig as the C compiler and linker for the target, against glibc
    # 2.17 for manylinux2014 or its own musl. (For musl, maturin warns that
    # it found no x86_64-linux-musl-gcc; zig is the compiler, so no matter.)
    "$maturin" build --release --zig --strip --quiet --target "$target" \
        --compatibility "$compat" "${interpreters[@]}" --out "$out"
    echo "built in $((SECONDS - t0)) s"
    for wheel in "$out"/*.whl; do
        if verdict=$(check_wheel "$wheel" "$want" "$where"); then
            echo "$verdict"
            mv "$wheel" "$dist/"
            built+=("$dist/$(basename "$wheel")")
            verdicts+=("${verdict#*: }")
        else
            echo "$verdict"
            failed+=("check of $(basename "$wheel")")
        fi
    done
done

# ---- 2b. Windows: the crate cross-checked -------------------------------
# A Windows wheel is built and tested by the release workflow on a Windows
# runner; here the whole crate (binding, tests, every feature) is checked
# with clippy for x86_64-pc-windows-gnu, so a Unix-only call fails here
# first. zig compiles ring's C for Windows (its `cc` wrapper drops the
# --target that cc-rs adds, which zig reads differently).
echo "== Windows x86_64: cargo clippy --target x86_64-pc-windows-gnu"
if why=$(have_target x86_64-pc-windows-gnu); then
    zigcc=$work/zigcc-windows
    printf '#!/bin/sh\nfor a in "$@"; do shift; case "$a" in --target=*) ;; *) set -- "$@" "$a";; esac; done\nexec "%s" -m ziglang cc -target x86_64-windows-gnu "$@"\n' \
        "$tools_py" >"$zigcc"
    chmod +x "$zigcc"
    t0=$SECONDS
    if CC_x86_64_pc_windows_gnu=$zigcc cargo clippy --quiet --locked \
        --target x86_64-pc-windows-gnu --all-targets --all-features -- -D warnings; then
        windows="checked (cargo clippy, -D warnings) in $((SECONDS - t0)) s"
    else
        windows="FAILED"
        failed+=("the Windows cross-check")
    fi
else
    windows="not checked here: $why"
fi
echo "Windows x86_64: $windows"

# ---- 3. smoke tests of the x86_64 glibc wheel on every CPython found -------
host_wheels=()
for wheel in "${built[@]}"; do
    case "$wheel" in *manylinux_2_17_x86_64*) host_wheels+=("$wheel") ;; esac
done
smoke_results=()
stage_smoke "$work/smoke" >"$work/smoke-tests"
mapfile -t smoke_paths <"$work/smoke-tests"
for py in "${pythons[@]}"; do
    version=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    wheel=""
    for w in "${host_wheels[@]}"; do
        case "$(basename "$w")" in *-cp310-abi3-* | *-"$tag"-"$tag"-*) wheel=$w ;; esac
    done
    echo "== smoke tests on CPython $version ($py)"
    if [ -z "$wheel" ]; then
        failed+=("CPython $version: no x86_64 wheel for it")
        continue
    fi
    env_dir=$work/venv-$version
    "$py" -m venv "$env_dir"
    "$env_dir/bin/python" -m pip install -q --disable-pip-version-check "${SMOKE_DEPS[@]}"
    "$env_dir/bin/python" -m pip install -q --disable-pip-version-check --no-index "$wheel"
    # From the staging directory, outside the source tree: the package must be
    # the installed wheel's. Fail loudly if it is not.
    log=$work/smoke-$version.log
    if (cd "$work/smoke" \
        && "$env_dir/bin/python" -c '
import sys, sysconfig, rust_py_rate_limit as m
print("rust_py_rate_limit from", m.__file__)
assert m.__file__.startswith(sysconfig.get_paths()["purelib"]), "not the installed wheel"
' \
        && "$env_dir/bin/python" -m pytest -q -p no:cacheprovider \
            -c "$repo/pyproject.toml" --rootdir "$work/smoke" "${smoke_paths[@]}") 2>&1 | tee "$log"; then
        smoke_results+=("CPython $version: $(grep -E '^=* ?[0-9]+ passed' "$log" | tail -n 1 | tr -d '=' | xargs)")
    else
        smoke_results+=("CPython $version: FAILED ($(grep -E '(passed|failed|error)' "$log" | tail -n 1 | tr -d '=' | xargs))")
        failed+=("smoke tests on CPython $version")
    fi
done

# ---- summary ---------------------------------------------------------------
echo
echo "== wheels in $dist"
for i in "${!built[@]}"; do
    wheel=${built[$i]}
    printf '%s  %s KiB\n   %s\n' "$(basename "$wheel")" "$(( $(stat -c %s "$wheel") / 1024 ))" "${verdicts[$i]}"
done
for line in "${cannot[@]}"; do
    echo "not built here: $line"
done
echo "Windows x86_64 (built and tested by the release workflow): $windows"
echo "== smoke subset (${#SMOKE_TESTS[@]} files) against the installed x86_64 wheel"
printf '%s\n' "${smoke_results[@]}"
echo "make wheels took $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "make wheels FAILED: ${failed[*]}"
    exit 1
fi
