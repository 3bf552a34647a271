"""AMF0 encoding and decoding (with the small part of AMF3 that RTMP peers use).

Python values map to AMF0 as follows:

========================  =========================================
Python                    AMF0
========================  =========================================
``float`` / ``int``       number (0x00)
``bool``                  boolean (0x01)
``str``                   string (0x02) or long string (0x0C)
``dict``                  object (0x03)
``None``                  null (0x05)
``UNDEFINED``             undefined (0x06)
:class:`ECMAArray`        ECMA array (0x08)
``list`` / ``tuple``      strict array (0x0A)
:class:`Date`             date (0x0B)
:class:`XMLDocument`      XML document (0x0F)
:class:`TypedObject`      typed object (0x10)
========================  =========================================

Decoding is defensive: nesting depth, string length and the number of
elements are bounded, and every malformed input raises
:class:`~streamgate.errors.RemoteProtocolError`, never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from streamgate.errors import RemoteProtocolError

__all__ = [
    "UNDEFINED",
    "AMFLimits",
    "Date",
    "ECMAArray",
    "TypedObject",
    "Undefined",
    "XMLDocument",
    "decode",
    "decode_all",
    "encode",
]

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
MOVIECLIP: Final = 0x04
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED: Final = 0x0D
RECORDSET: Final = 0x0E
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10
AVMPLUS: Final = 0x11

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class Undefined:
    """The AMF ``undefined`` value (distinct from ``null``/``None``)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = Undefined()


class ECMAArray(dict[str, Any]):
    """An associative array (what ``onMetaData`` usually carries)."""


class TypedObject(dict[str, Any]):
    """An object with a class name."""

    def __init__(self, class_name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.class_name = class_name

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TypedObject)
            and other.class_name == self.class_name
            and dict.__eq__(self, other)
        )

    def __ne__(self, other: object) -> bool:  # dict has its own __ne__: keep them consistent
        return not self.__eq__(other)

    __hash__ = None


class XMLDocument(str):
    """An XML document, kept as text."""


@dataclass(frozen=True, slots=True)
class Date:
    """An AMF date: milliseconds since the epoch and a (legacy) time-zone field."""

    timestamp_ms: float
    timezone: int = 0


@dataclass(frozen=True, slots=True)
class AMFLimits:
    """Bounds that keep a hostile payload from costing more than its own size."""

    max_depth: int = 32
    max_string: int = 1 << 20


DEFAULT_LIMITS: Final = AMFLimits()


# ---------------------------------------------------------------- encoding


def encode(*values: Any) -> bytes:
    """Encode values one after another, as a command or data message body."""
    out = bytearray()
    for value in values:
        _encode_value(out, value, 0)
    return bytes(out)


def _encode_str_body(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) > 0xFFFF:
        raise ValueError("object key longer than 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(out: bytearray, mapping: dict[str, Any], depth: int) -> None:
    for key, item in mapping.items():
        _encode_str_body(out, str(key))
        _encode_value(out, item, depth + 1)
    out += b"\x00\x00\x09"


def _encode_value(out: bytearray, value: Any, depth: int) -> None:
    if depth > 64:
        raise ValueError("value nested too deeply to encode")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += b"\x01\x01" if value else b"\x01\x00"
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, XMLDocument):
        raw = value.encode("utf-8", "surrogateescape")
        out.append(XML_DOCUMENT)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, TypedObject):
        out.append(TYPED_OBJECT)
        _encode_str_body(out, value.class_name)
        _encode_properties(out, value, depth)
    elif isinstance(value, ECMAArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_value(out, item, depth + 1)
    elif isinstance(value, Date):
        out.append(DATE)
        out += _DATE.pack(value.timestamp_ms, value.timezone)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


# ---------------------------------------------------------------- decoding


class _Reader:
    """A cursor over one message body; every read is bounds-checked."""

    __slots__ = ("buf", "end", "limits", "pos", "refs")

    def __init__(self, buf: bytes | bytearray | memoryview, limits: AMFLimits) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.limits = limits
        self.refs: list[Any] = []

    def need(self, n: int) -> int:
        pos = self.pos
        if self.end - pos < n:
            raise RemoteProtocolError(f"AMF0: truncated value at byte {pos}")
        self.pos = pos + n
        return pos

    def text(self, n: int) -> str:
        if n > self.limits.max_string:
            raise RemoteProtocolError(f"AMF0: string of {n} bytes exceeds the limit")
        pos = self.need(n)
        return bytes(self.buf[pos : pos + n]).decode("utf-8", "surrogateescape")

    def short_text(self) -> str:
        pos = self.need(2)
        return self.text(_U16.unpack_from(self.buf, pos)[0])

    def value(self, depth: int) -> Any:
        if depth > self.limits.max_depth:
            raise RemoteProtocolError("AMF0: nesting too deep")
        pos = self.need(1)
        marker = self.buf[pos]
        reader = _READERS.get(marker)
        if reader is None:
            raise RemoteProtocolError(f"AMF0: unknown type marker 0x{marker:02x}")
        return reader(self, depth)

    def properties(self, target: dict[str, Any], depth: int) -> dict[str, Any]:
        while True:
            key = self.short_text()
            if not key:
                pos = self.need(1)
                if self.buf[pos] == OBJECT_END:
                    return target
                # An empty key followed by a value is legal, if rare.
                self.pos = pos
            target[key] = self.value(depth + 1)


def _read_number(r: _Reader, depth: int) -> float:
    pos = r.need(8)
    value: float = _DOUBLE.unpack_from(r.buf, pos)[0]
    return value


def _read_boolean(r: _Reader, depth: int) -> bool:
    return r.buf[r.need(1)] != 0


def _read_string(r: _Reader, depth: int) -> str:
    return r.short_text()


def _read_long_string(r: _Reader, depth: int) -> str:
    pos = r.need(4)
    return r.text(_U32.unpack_from(r.buf, pos)[0])


def _read_xml(r: _Reader, depth: int) -> XMLDocument:
    return XMLDocument(_read_long_string(r, depth))


def _read_object(r: _Reader, depth: int) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    r.refs.append(obj)
    return r.properties(obj, depth)


def _read_typed_object(r: _Reader, depth: int) -> TypedObject:
    obj = TypedObject(r.short_text())
    r.refs.append(obj)
    r.properties(obj, depth)
    return obj


def _read_ecma_array(r: _Reader, depth: int) -> ECMAArray:
    r.need(4)  # the count is only a hint; the terminator ends the array
    arr = ECMAArray()
    r.refs.append(arr)
    r.properties(arr, depth)
    return arr


def _read_strict_array(r: _Reader, depth: int) -> list[Any]:
    pos = r.need(4)
    count = _U32.unpack_from(r.buf, pos)[0]
    if count > r.end - r.pos:  # every element takes at least one byte
        raise RemoteProtocolError(f"AMF0: strict array claims {count} elements")
    items: list[Any] = []
    r.refs.append(items)
    for _ in range(count):
        items.append(r.value(depth + 1))  # noqa: PERF401 - refs must see the list first
    return items


def _read_date(r: _Reader, depth: int) -> Date:
    pos = r.need(10)
    ms, tz = _DATE.unpack_from(r.buf, pos)
    return Date(ms, tz)


def _read_null(r: _Reader, depth: int) -> None:
    return None


def _read_undefined(r: _Reader, depth: int) -> Undefined:
    return UNDEFINED


def _read_reference(r: _Reader, depth: int) -> Any:
    pos = r.need(2)
    index = _U16.unpack_from(r.buf, pos)[0]
    if index >= len(r.refs):
        raise RemoteProtocolError(f"AMF0: reference {index} to an unknown object")
    return r.refs[index]


def _read_avmplus(r: _Reader, depth: int) -> Any:
    return _read_amf3_value(r)


_READERS: dict[int, Any] = {
    NUMBER: _read_number,
    BOOLEAN: _read_boolean,
    STRING: _read_string,
    OBJECT: _read_object,
    NULL: _read_null,
    UNDEFINED_MARKER: _read_undefined,
    UNSUPPORTED: _read_undefined,
    REFERENCE: _read_reference,
    ECMA_ARRAY: _read_ecma_array,
    STRICT_ARRAY: _read_strict_array,
    DATE: _read_date,
    LONG_STRING: _read_long_string,
    XML_DOCUMENT: _read_xml,
    TYPED_OBJECT: _read_typed_object,
    AVMPLUS: _read_avmplus,
}


def _read_u29(r: _Reader) -> int:
    value = 0
    for i in range(4):
        byte = r.buf[r.need(1)]
        if i == 3:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    raise AssertionError("unreachable")  # pragma: no cover


def _read_amf3_value(r: _Reader) -> Any:
    """The scalar subset of AMF3 that appears after an AVM+ switch in RTMP.

    Complex AMF3 values (objects, arrays, byte arrays) are not used by any
    RTMP command we act on; they are refused rather than half-parsed.
    """
    marker = r.buf[r.need(1)]
    if marker in (0x00, 0x01):
        return UNDEFINED if marker == 0x00 else None
    if marker in (0x02, 0x03):
        return marker == 0x03
    if marker == 0x04:
        value = _read_u29(r)
        return value - (1 << 29) if value & (1 << 28) else value
    if marker == 0x05:
        return _read_number(r, 0)
    if marker == 0x06:
        header = _read_u29(r)
        if not header & 1:
            raise RemoteProtocolError("AMF3: string references are not supported")
        return r.text(header >> 1)
    raise RemoteProtocolError(f"AMF3: unsupported type marker 0x{marker:02x}")


def decode_all(
    data: bytes | bytearray | memoryview, limits: AMFLimits = DEFAULT_LIMITS
) -> list[Any]:
    """Decode every value in a message body."""
    r = _Reader(data, limits)
    values = []
    try:
        while r.pos < r.end:
            values.append(r.value(0))
    except RecursionError:
        raise RemoteProtocolError("AMF0: nesting too deep") from None
    return values


def decode(data: bytes | bytearray | memoryview, limits: AMFLimits = DEFAULT_LIMITS) -> Any:
    """Decode exactly one value; trailing bytes are an error."""
    r = _Reader(data, limits)
    try:
        value = r.value(0)
    except RecursionError:
        raise RemoteProtocolError("AMF0: nesting too deep") from None
    if r.pos != r.end:
        raise RemoteProtocolError(f"AMF0: {r.end - r.pos} trailing bytes")
    return value
