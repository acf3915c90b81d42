import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

@testable import Network

/// One hostile input and the parts of the message it must produce.
private struct Malformed {
    let name: String
    let bytes: [UInt8]
    let fragments: [String]

    init(_ name: String, _ bytes: [UInt8], _ fragments: [String]) {
        self.name = name
        self.bytes = bytes
        self.fragments = fragments
    }
}

/// An npy header dict with one field replaced, padded like numpy's.
private func header(
    descr: String = "'<f4'", fortran: String = "False",
    shape: String = "(2,)", extra: String = ""
) -> String {
    "{'descr': \(descr), 'fortran_order': \(fortran), 'shape': \(shape), "
        + "\(extra)}    \n"
}

private let twoFloats = littleEndianBytes([1, 2])

/// A safetensors entry as JSON text.
private func entry(
    _ name: String, dtype: String = "\"F32\"", shape: String = "[2]",
    offsets: String = "[0,8]"
) -> String {
    "\"\(name)\":{\"dtype\":\(dtype),\"shape\":\(shape),"
        + "\"data_offsets\":\(offsets)}"
}

private func headerLengthField(_ n: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
}

final class MalformedInputTests: XCTestCase {
    private let npyCases: [Malformed] = {
        let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
        let deep =
            String(repeating: "(", count: 200)
            + String(repeating: ")", count: 200)
        var nonUTF8 = npyFile(header(), data: twoFloats, version: 3)
        nonUTF8[14] = 0xC3  // a lead byte followed by ASCII: not UTF-8
        var latin1 = npyFile(header(), data: twoFloats)
        latin1[12] = 0xFF
        let bigHeader = String(repeating: " ", count: 2_000_000)
        return [
            Malformed("empty", [], ["empty", "\\x93NUMPY"]),
            Malformed(
                "zip", Array("PK\u{3}\u{4}not numpy at all".utf8),
                ["magic", "0x50 0x4B 0x03 0x04"]),
            Malformed(
                "cut in magic", Array(magic[0..<3]),
                ["truncated inside the npy magic"]),
            Malformed(
                "cut in preamble", magic + [1, 0],
                ["truncated inside the npy preamble", "header length"]),
            Malformed(
                "version 4", magic + [4, 0, 10, 0] + Array(header().utf8),
                ["version 4.0", "expected 1.0, 2.0 or 3.0"]),
            Malformed(
                "header past end", magic + [1, 0, 0xFF, 0xFF] + [0x7B],
                ["header length 65535", "runs past the end"]),
            Malformed(
                "header over limit",
                npyFile(bigHeader, version: 2),
                ["header length 2000000", "limit"]),
            Malformed(
                "cut in header",
                npyFile("{'descr': '<f4', 'fortr"),
                ["malformed header dictionary", "unterminated string"]),
            Malformed(
                "not a dict", npyFile("[1, 2]\n", data: twoFloats),
                ["expected '{'"]),
            Malformed(
                "no shape",
                npyFile("{'descr': '<f4', 'fortran_order': False}\n"),
                ["no 'shape' key"]),
            Malformed(
                "extra key",
                npyFile(header(extra: "'extra': 1, "), data: twoFloats),
                ["unexpected key 'extra'"]),
            Malformed(
                "duplicate key",
                npyFile(header(extra: "'descr': '<f8', "), data: twoFloats),
                ["'descr' appears twice"]),
            Malformed(
                "u1", npyFile(header(descr: "'|u1'"), data: [1, 2]),
                ["'|u1' is not supported", "'<f4'"]),
            Malformed(
                "native order",
                npyFile(header(descr: "'=f4'"), data: twoFloats),
                ["'=f4' is not supported"]),
            Malformed(
                "structured",
                npyFile(header(descr: "[('a', '<f4')]"), data: twoFloats),
                ["structured dtype"]),
            Malformed(
                "negative dim",
                npyFile(header(shape: "(-3, 4)"), data: twoFloats),
                ["negative dimension", "(-3, 4)"]),
            Malformed(
                "element overflow",
                npyFile(header(shape: "(1099511627776, 1099511627776)")),
                ["more elements than a 64-bit Int"]),
            Malformed(
                "byte overflow",
                npyFile(
                    header(descr: "'<f8'", shape: "(4611686018427387904,)")),
                ["needs more bytes than a 64-bit Int"]),
            Malformed(
                "huge shape, tiny file",
                npyFile(header(shape: "(1099511627776,)"), data: twoFloats),
                ["promises 4398046511104 bytes", "only 8 bytes", "truncated"]),
            Malformed(
                "data cut short",
                npyFile(header(), data: Array(twoFloats.dropLast())),
                ["promises 8 bytes", "only 7 bytes"]),
            Malformed(
                "trailing bytes",
                npyFile(header(), data: twoFloats + [0, 0, 0, 0]),
                ["4 bytes follow the 8 bytes of data"]),
            Malformed(
                "fortran not bool",
                npyFile(header(fortran: "0"), data: twoFloats),
                ["'fortran_order' is not True or False"]),
            Malformed(
                "lowercase true",
                npyFile(header(fortran: "true"), data: twoFloats),
                ["malformed header dictionary", "expected a value"]),
            Malformed(
                "shape list", npyFile(header(shape: "[2]"), data: twoFloats),
                ["'shape' is not a tuple"]),
            Malformed(
                "shape (2)", npyFile(header(shape: "(2)"), data: twoFloats),
                ["not a tuple", "'(x,)'"]),
            Malformed(
                "float dim", npyFile(header(shape: "(2.0,)"), data: twoFloats),
                ["malformed header dictionary", "'.'"]),
            Malformed("v3 not UTF-8", nonUTF8, ["not valid UTF-8"]),
            Malformed("latin-1 byte", latin1, ["0xFF", "header byte 2"]),
            Malformed(
                "integer too big",
                npyFile(header(shape: "(99999999999999999999,)")),
                ["does not fit in a 64-bit Int"]),
            Malformed(
                "deep nesting", npyFile(header(shape: deep)),
                ["nested more than 32 deep"]),
            Malformed(
                "escape", npyFile(header(descr: "'<f\\x34'"), data: twoFloats),
                ["escape sequences are not supported"]),
        ]
    }()

    private let safetensorsCases: [Malformed] = {
        func file(_ json: String, _ data: [UInt8] = twoFloats) -> [UInt8] {
            safetensorsFile(json, data: data)
        }
        let deep =
            String(repeating: "[", count: 100)
            + String(repeating: "]", count: 100)
        return [
            Malformed("short", [1, 2, 3, 4, 5], ["at least the 8-byte"]),
            Malformed(
                "length 2^63", headerLengthField(1 << 63) + Array("{}".utf8),
                ["header length 9223372036854775808", "runs past the end"]),
            Malformed(
                "length past end", headerLengthField(100) + Array("{}".utf8),
                ["header length 100", "2 bytes after the length field"]),
            Malformed(
                "not UTF-8", headerLengthField(3) + [0x7B, 0xFF, 0x7D],
                ["not valid UTF-8"]),
            Malformed(
                "cut JSON", file(#"{"a":"#, []),
                ["not valid JSON", "expected a JSON value"]),
            Malformed(
                "empty header", file("", []),
                ["not valid JSON", "expected a JSON value"]),
            Malformed(
                "array", file("[1,2]", []),
                ["header JSON is an array; expected an object"]),
            Malformed(
                "string", file(#""weights""#, []),
                ["header JSON is a string; expected an object"]),
            Malformed(
                "trailing comma", file("{\(entry("a")),}"),
                ["not valid JSON", "expected a string key"]),
            Malformed("NaN", file(#"{"a":NaN}"#), ["not valid JSON"]),
            Malformed(
                "duplicate names", file("{\(entry("w")),\(entry("w"))}"),
                ["key \"w\" appears twice"]),
            Malformed(
                "BF16",
                file("{\(entry("w", dtype: "\"BF16\"", offsets: "[0,4]"))}"),
                ["dtype \"BF16\"", "not supported", "F32, F64, I32 or I64"]),
            Malformed(
                "unknown dtype", file("{\(entry("w", dtype: "\"XYZ\""))}"),
                ["dtype \"XYZ\""]),
            Malformed(
                "dtype number", file("{\(entry("w", dtype: "5"))}"),
                ["tensor 'w' dtype is not a string"]),
            Malformed(
                "past data end",
                file("{\(entry("w", shape: "[4]", offsets: "[0,16]"))}"),
                ["tensor 'w'", "[0, 16] past the end of the data (8 bytes"]),
            Malformed(
                "huge offsets",
                file(
                    "{"
                        + entry(
                            "w", shape: "[1152921504606846976]",
                            offsets: "[0,4611686018427387904]") + "}"),
                ["past the end of the data"]),
            Malformed(
                "data cut short", file("{\(entry("w"))}", [1, 2, 3]),
                ["past the end of the data (3 bytes"]),
            Malformed(
                "overlap",
                file(
                    "{\(entry("a")),\(entry("b", offsets: "[4,12]"))}",
                    twoFloats + twoFloats),
                ["'a' [0, 8] and 'b' [4, 12] overlap"]),
            Malformed(
                "byte count",
                file(
                    "{\(entry("w", shape: "[2,2]", offsets: "[0,12]"))}",
                    twoFloats + twoFloats),
                ["shape [2, 2] of F32 needs 16 bytes", "span 12"]),
            Malformed(
                "negative dim", file("{\(entry("w", shape: "[-2]"))}"),
                ["value -2 is negative"]),
            Malformed(
                "float dim", file("{\(entry("w", shape: "[2.0]"))}"),
                ["value 2.0 is not an integer"]),
            Malformed(
                "exponent dim", file("{\(entry("w", shape: "[2e0]"))}"),
                ["value 2e0 is not an integer"]),
            Malformed(
                "element overflow",
                file("{\(entry("w", shape: "[1099511627776,1099511627776]"))}"),
                ["more elements than a 64-bit Int"]),
            Malformed(
                "byte overflow",
                file(
                    "{"
                        + entry(
                            "w", dtype: "\"F64\"",
                            shape: "[4611686018427387904]") + "}"),
                ["needs more bytes than a 64-bit Int"]),
            Malformed(
                "integer too big",
                file("{\(entry("w", offsets: "[0,99999999999999999999]"))}"),
                ["value 99999999999999999999 is too large"]),
            Malformed(
                "reversed offsets", file("{\(entry("w", offsets: "[8,0]"))}"),
                ["data_offsets [8, 0]", "begin <= end"]),
            Malformed(
                "three offsets", file("{\(entry("w", offsets: "[0,4,8]"))}"),
                ["[begin, end]"]),
            Malformed(
                "shape not array", file("{\(entry("w", shape: "2"))}"),
                ["tensor 'w' shape is a number"]),
            Malformed(
                "no offsets", file(#"{"w":{"dtype":"F32","shape":[2]}}"#),
                ["tensor 'w' has no \"data_offsets\""]),
            Malformed(
                "extra key",
                file(
                    #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"#
                        + #""extra":1}}"#),
                ["unexpected key \"extra\""]),
            Malformed(
                "entry not object", file(#"{"w":"F32"}"#),
                ["tensor 'w' is a string; expected an object"]),
            Malformed(
                "metadata array", file(#"{"__metadata__":[]}"#, []),
                ["\"__metadata__\" is an array"]),
            Malformed(
                "metadata number", file(#"{"__metadata__":{"n":1}}"#, []),
                ["entry \"n\" is a number; expected a string"]),
            Malformed(
                "lone surrogate", file(#"{"\ud800":{}}"#, []),
                ["surrogate"]),
            Malformed(
                "deep nesting", file("{\"w\":\(deep)}", []),
                ["nested more than 64 deep"]),
            Malformed(
                "control character", file("{\"a\u{1}\":{}}", []),
                ["control character"]),
        ]
    }()

    func testMalformedNPYFilesAreRefusedWithSpecificErrors() {
        XCTAssertGreaterThanOrEqual(npyCases.count, 20)
        for c in npyCases {
            let label = "bad/\(c.name).npy"
            assertFormatError(
                try NPY.decode(c.bytes, file: label), file: label,
                c.fragments, c.name)
        }
    }

    func testMalformedSafeTensorsFilesAreRefusedWithSpecificErrors() {
        XCTAssertGreaterThanOrEqual(safetensorsCases.count, 20)
        for c in safetensorsCases {
            let label = "bad/\(c.name).safetensors"
            assertFormatError(
                try SafeTensors.decode(c.bytes, file: label), file: label,
                c.fragments, c.name)
        }
    }

    /// The same tables through the file readers, which take a different
    /// path for sizes and reads.
    func testMalformedFilesOnDiskGiveTheSameErrors() throws {
        let dir = try makeTemporaryDirectory(for: self)
        for (i, c) in npyCases.enumerated() {
            let path = dir + "/\(i).npy"
            try Data(c.bytes).write(to: URL(fileURLWithPath: path))
            assertFormatError(
                try NPY.read(contentsOf: path), file: path, c.fragments,
                c.name)
        }
        for (i, c) in safetensorsCases.enumerated() {
            let path = dir + "/\(i).safetensors"
            try Data(c.bytes).write(to: URL(fileURLWithPath: path))
            assertFormatError(
                try SafeTensors.read(contentsOf: path), file: path,
                c.fragments, c.name)
            assertFormatError(
                try SafeTensors.readMetadata(contentsOf: path), file: path,
                c.fragments, c.name)
        }
    }

    /// Cutting a valid file anywhere, in the preamble, header or data,
    /// must give an error, never a crash or a shorter array.
    func testEveryTruncationIsAnError() throws {
        let npy = NPY.encode(formulaArray(.float32, shape: [2, 3]))
        for length in 0..<npy.count {
            assertFormatError(
                try NPY.decode(Array(npy[0..<length]), file: "cut.npy"),
                file: "cut.npy", [], "npy cut at \(length)")
        }
        let st = try SafeTensors.encode(
            [
                ("a", formulaArray(.float32, shape: [2, 3])),
                ("b", formulaArray(.int64, shape: [2])),
            ], metadata: ["k": "v"])
        for length in 0..<st.count {
            assertFormatError(
                try SafeTensors.decode(
                    Array(st[0..<length]), file: "cut.safetensors"),
                file: "cut.safetensors", [], "safetensors cut at \(length)")
        }
    }

    /// Overwriting each header byte with bytes that often confuse parsers
    /// must give either a valid array or a FileFormatError, never a trap.
    func testCorruptedHeaderBytesNeverCrash() throws {
        let probes: [UInt8] = Array("\0 09-(){}[],:'\"\\.eL".utf8) + [0xFF]
        let npy = NPY.encode(formulaArray(.int32, shape: [3, 2]))
        for position in 0..<(npy.count - 24) {
            for probe in probes {
                var bytes = npy
                bytes[position] = probe
                do {
                    _ = try NPY.decode(bytes, file: "fuzz.npy")
                } catch let error as FileFormatError {
                    XCTAssertEqual(error.file, "fuzz.npy")
                }
            }
        }
        let st = try SafeTensors.encode(
            [("a", formulaArray(.float64, shape: [2]))],
            metadata: ["k": "v"])
        for position in 0..<(st.count - 16) {
            for probe in probes {
                var bytes = st
                bytes[position] = probe
                do {
                    _ = try SafeTensors.decode(bytes, file: "fuzz.st")
                } catch let error as FileFormatError {
                    XCTAssertEqual(error.file, "fuzz.st")
                }
            }
        }
    }

    /// Sparse files whose honest headers describe more data than this
    /// machine has memory: refused from the sizes alone, without reading
    /// or allocating the data.
    func testFilesLargerThanMemoryAreRefused() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let memory = Int(ProcessInfo.processInfo.physicalMemory)
        let count = memory / 4 + 1

        let npyPath = dir + "/huge.npy"
        let npyBytes = npyFile(header(shape: "(\(count),)"))
        try makeSparseFile(
            npyPath, prefix: npyBytes, size: npyBytes.count + 4 * count)
        assertFormatError(
            try NPY.read(contentsOf: npyPath), file: npyPath,
            ["more than this machine's", "of memory"])

        let stPath = dir + "/huge.safetensors"
        let json =
            "{"
            + entry(
                "w", shape: "[\(count)]", offsets: "[0,\(4 * count)]") + "}"
        let stBytes = safetensorsFile(json)
        try makeSparseFile(
            stPath, prefix: stBytes, size: stBytes.count + 4 * count)
        assertFormatError(
            try SafeTensors.read(contentsOf: stPath), file: stPath,
            ["the tensors need", "more than this machine's"])
    }

    func testSafeTensorsHeaderOverLimitIsRefusedBeforeReading() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let path = dir + "/big-header.safetensors"
        try makeSparseFile(
            path, prefix: headerLengthField(200_000_000),
            size: 8 + 200_000_000)
        assertFormatError(
            try SafeTensors.read(contentsOf: path), file: path,
            ["header length 200000000", "100000000-byte limit"])
    }

    func testMissingFilesAndDirectoriesNameTheReason() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let missing = dir + "/missing.npy"
        assertFormatError(
            try NPY.read(contentsOf: missing), file: missing,
            ["cannot open", "No such file or directory"])
        assertFormatError(
            try SafeTensors.readMetadata(contentsOf: missing), file: missing,
            ["No such file or directory"])
        assertFormatError(
            try SafeTensors.read(contentsOf: dir), file: dir,
            ["is a directory; expected a regular file"])
    }

    private func makeSparseFile(_ path: String, prefix: [UInt8], size: Int)
        throws
    {
        try Data(prefix).write(to: URL(fileURLWithPath: path))
        guard truncate(path, off_t(size)) == 0 else {
            throw PythonError(
                description: "cannot extend \(path) to \(size) bytes: "
                    + String(cString: strerror(errno)))
        }
    }
}

final class AtomicWriteTests: XCTestCase {
    func testWritesReplacesAndLeavesNoTemporaryFiles() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let path = dir + "/out.bin"
        try writeFileAtomically([1, 2, 3], to: path)
        try writeFileAtomically([4, 5], to: path)
        XCTAssertEqual(
            try Array(Data(contentsOf: URL(fileURLWithPath: path))), [4, 5])
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir),
            ["out.bin"])
    }

    func testRelativePathsWriteIntoTheCurrentDirectory() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try NPY.write(HostArray(shape: [1], floats: [3]), to: "rel.npy")
        XCTAssertEqual(
            try NPY.read(contentsOf: dir + "/rel.npy").floats(), [3])
    }

    func testErrorsNameThePathAndTheReason() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let inMissingFolder = dir + "/no/such/folder/w.safetensors"
        assertFormatError(
            try SafeTensors.write([], to: inMissingFolder),
            file: inMissingFolder,
            ["cannot create temporary file", "No such file or directory"])
        assertFormatError(
            try writeFileAtomically([1], to: dir + "/"), file: dir + "/",
            ["not a directory"])
        // Renaming a file over a non-empty directory fails; the temporary
        // file must be gone afterwards.
        let occupied = dir + "/occupied"
        try FileManager.default.createDirectory(
            atPath: occupied + "/child", withIntermediateDirectories: true)
        assertFormatError(
            try NPY.write(HostArray(shape: [], floats: [1]), to: occupied),
            file: occupied, ["cannot rename"])
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir),
            ["occupied"])
    }
}
