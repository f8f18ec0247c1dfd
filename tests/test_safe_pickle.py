"""The restricted unpickler: plain data loads, anything that would run code is refused unexecuted."""

from __future__ import annotations

import marshal
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest

from harness.data import safe_pickle
from harness.data.safe_pickle import UnsafePickleError


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class Plain:
    pass


class LoadsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        code = compile("open('/tmp/harness-pwned', 'w').write('x')", "<evil>", "exec")
        return (marshal.loads, (marshal.dumps(code),))


def test_plain_containers_and_scalars_load(tmp_path: Path) -> None:
    ref = {"ref_id": 1, "sentences": [{"sent": "man", "tokens": ["man"]}], "box": (1.5, 2, None, True), "n": 2**70}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        data_p: list[Any] = [ref, "é"]
        if protocol >= 3:
            data_p.append(b"raw")  # Python 3 bytes before protocol 3 go through _codecs.encode (a global)
        if protocol >= 4:
            data_p.append({1, 2})  # sets before protocol 4 go through builtins.set (a global)
        path = tmp_path / f"p{protocol}.p"
        path.write_bytes(pickle.dumps(data_p, protocol=protocol))
        assert safe_pickle.load(path) == data_p


def test_os_system_via_reduce_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, RunsShell(marker)], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p: refused to load: the pickle asks for (posix|os|nt)\.system"):
        safe_pickle.load(path)
    assert not marker.exists()


def test_code_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "code.p"
    path.write_bytes(pickle.dumps(LoadsCode()))
    with pytest.raises(UnsafePickleError, match=r"code\.p: refused to load: the pickle asks for marshal\.loads"):
        safe_pickle.load(path)
    assert not Path("/tmp/harness-pwned").exists()
    # a code object pickled through copyreg/types (protocol 0 GLOBAL opcode) is refused the same way
    raw = b"ctypes\nCodeType\n(tR."
    with pytest.raises(UnsafePickleError, match=r"types\.CodeType"):
        safe_pickle.loads(raw, where="inline")


def test_instances_and_builtins_are_refused() -> None:
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        safe_pickle.loads(pickle.dumps(eval), where="x")
    for protocol in (0, 2, 5):  # an instance needs its class (and copyreg): globals
        with pytest.raises(UnsafePickleError, match="refused to load"):
            safe_pickle.loads(pickle.dumps(Plain(), protocol=protocol), where="x")


def _py2_str(data: bytes) -> bytes:
    """A Python 2 pickle (protocol 2) of a list holding one ``str`` with these bytes."""
    return b"\x80\x02]q\x00U" + struct.pack("B", len(data)) + data + b"q\x01a."


def test_python2_strings_decode_as_utf8_then_latin1() -> None:
    assert safe_pickle.loads(_py2_str(b"man on the left")) == ["man on the left"]
    assert safe_pickle.loads(_py2_str("café".encode())) == ["café"]
    assert safe_pickle.loads(_py2_str("café".encode("latin-1"))) == ["café"]


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UnsafePickleError, match=r"missing\.p: file does not exist"):
        safe_pickle.load(tmp_path / "missing.p")
    bad = tmp_path / "bad.p"
    bad.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(UnsafePickleError, match=r"bad\.p: not a readable pickle"):
        safe_pickle.load(bad)
    pers = tmp_path / "persistent.p"
    pers.write_bytes(b"\x80\x02X\x01\x00\x00\x00aQ.")  # BINPERSID
    with pytest.raises(UnsafePickleError, match=r"persistent\.p"):
        safe_pickle.load(pers)
