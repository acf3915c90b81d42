#!/usr/bin/env python3
"""Writes the hand-made seed files of Fuzz/corpus/ (run from the repository
root; needs numpy). The other seeds are copies of project files, listed in
Fuzz/README.md."""
import json
import os
import struct

import numpy as np

root = "Fuzz/corpus"


def put(target, name, data):
    os.makedirs(f"{root}/{target}", exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(f"{root}/{target}/{name}", "wb") as f:
        f.write(data)


# npy: every accepted dtype and byte order, Fortran order, scalars, empty
# arrays, a version 2.0 and a 3.0 header.
os.makedirs(f"{root}/npy", exist_ok=True)
np.save(f"{root}/npy/f4-2x3.npy", np.arange(6, dtype="<f4").reshape(2, 3))
np.save(f"{root}/npy/f8-be-3.npy", np.array([1.5, -0.0, np.nan], dtype=">f8"))
np.save(f"{root}/npy/i4-fortran-2x3x2.npy",
        np.asfortranarray(np.arange(12, dtype="<i4").reshape(2, 3, 2)))
np.save(f"{root}/npy/i8-be-scalar.npy", np.array(-7, dtype=">i8"))
np.save(f"{root}/npy/i4-empty-0x4.npy", np.zeros((0, 4), dtype="<i4"))
with open(f"{root}/npy/f4-v2.npy", "wb") as f:
    np.lib.format.write_array(f, np.ones((2, 2), dtype="<f4"), version=(2, 0))
with open(f"{root}/npy/i8-v3.npy", "wb") as f:
    np.lib.format.write_array(f, np.arange(3, dtype="<i8"), version=(3, 0))


# safetensors, written by hand: metadata, all four dtypes, an empty
# tensor, a gap between ranges, a scalar.
def safetensors(entries, metadata=None, pad=True):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


put("safetensors", "all-dtypes-metadata.safetensors", safetensors([
    ("a.f32", "F32", [2, 2], np.arange(4, dtype="<f4").tobytes()),
    ("b.f64", "F64", [1], np.array([2.5], dtype="<f8").tobytes()),
    ("c.i32", "I32", [3], np.array([1, -2, 3], dtype="<i4").tobytes()),
    ("d.i64", "I64", [], np.array([9], dtype="<i8").tobytes()),
    ("e.empty", "F32", [0, 5], b""),
], metadata={"format": "pt", "step": "3", "checksum": "0" * 16}))
put("safetensors", "unpadded-one.safetensors", safetensors([
    ("w", "F32", [1, 3], np.array([1, 2, 3], dtype="<f4").tobytes()),
], pad=False))
put("safetensors", "empty-object.safetensors", safetensors([]))

# CSV: the RFC 4180 cases the reader handles.
put("csv", "simple.csv", "a,b,c\n1,2,3\n4,5,6\n")
put("csv", "quoted-crlf.csv",
    'text,n\r\n"hello, world",1\r\n"say ""hi""",2\r\n"two\r\nlines",3\r\n')
put("csv", "bom-mixed-breaks.csv", "\ufeffx,y\r1,2\n3,4\r\n\n\n")
put("csv", "one-column-blanks.csv", "only\nx\n\ny\n\n")
put("csv", "unicode.csv", 'name,value\n"Caf\u00e9 \u2019t",\u00e9\u0301\n\u65e5\u672c,"\u2764\ufe0f"\n')
put("csv", "header-only.csv", "a,b")

# vocabulary.txt: the word shapes the tokenizer makes.
put("vocabulary", "words.txt", "the\nto\ndon't\ndon\u2019t\n2017\ncaf\u00e9\nnai\u0308ve\n\u65e5\u672c\n")
put("vocabulary", "one-word-no-newline.txt", "x")
put("vocabulary", "empty.txt", "")
