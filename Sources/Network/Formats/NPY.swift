/// Reads and writes numpy `.npy` files.
///
/// Reading accepts format versions 1.0, 2.0 and 3.0 and the dtypes `<f4`,
/// `<f8`, `<i4` and `<i8`, plus their big-endian forms `>f4`, `>f8`,
/// `>i4` and `>i8`, which are byte-swapped on reading. Arrays stored with
/// `fortran_order: True` are transposed into row-major order. Everything
/// else is refused with a `FileFormatError`: other dtypes (`|i1`, `|u1`,
/// `<i2`, `<u2`, `<u4`, `<u8`, `<f2`, `|b1`, complex, strings, objects,
/// structured dtypes, native-order `=` descriptors), headers over 1 MiB,
/// and files with bytes after the data, because any of these could be
/// misread as something else.
///
/// Writing produces what `numpy.save` produces for the same array:
/// version 1.0 (2.0 only when the header would not fit), little-endian,
/// row-major, with the header padded so the data starts at a multiple of
/// 64 bytes.
public enum NPY {
    /// The largest header accepted. numpy's own reader stops at 10000
    /// bytes by default; this is looser but still keeps a hostile length
    /// field from making the reader allocate much.
    static let maxHeaderLength = 1 << 20

    private static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// Reads the `.npy` file at `path`. Its size is checked first and the
    /// header is validated against it before any data is allocated.
    public static func read(contentsOf path: String) throws -> HostArray {
        try load(from: FileSource(path: path))
    }

    /// Decodes the bytes of a `.npy` file; `file` names it in errors.
    public static func decode(_ bytes: [UInt8], file: String) throws
        -> HostArray
    {
        try load(from: MemorySource(bytes: bytes, label: file))
    }

    /// The bytes of a `.npy` file holding `array`.
    public static func encode(_ array: HostArray) -> [UInt8] {
        var dict = "{'descr': '\(descr(of: array.elementType))', "
        dict += "'fortran_order': False, 'shape': \(tupleText(array.shape)), }"
        // numpy leaves room for the first dimension to grow to 21 digits
        // so that an appending writer can rewrite the header in place; the
        // same padding makes these files byte-identical to numpy.save's.
        if let first = array.shape.first {
            dict += String(repeating: " ", count: max(0, 21 - "\(first)".count))
        }
        var out: [UInt8] = []
        for (version, lengthBytes) in [(UInt8(1), 2), (UInt8(2), 4)] {
            let preamble = magic.count + 2 + lengthBytes
            // One byte for the closing newline, then pad to 64, always
            // adding at least one space as numpy does.
            let unpadded = preamble + dict.utf8.count + 1
            let padding = 64 - unpadded % 64
            let headerLength = dict.utf8.count + padding + 1
            if version == 1, headerLength > Int(UInt16.max) { continue }
            out = magic + [version, 0]
            for i in 0..<lengthBytes {
                out.append(UInt8(truncatingIfNeeded: headerLength >> (8 * i)))
            }
            out += Array(dict.utf8)
            out += [UInt8](repeating: 0x20, count: padding)
            out.append(0x0A)
            break
        }
        out.reserveCapacity(
            out.count + array.count * array.elementType.byteSize)
        appendLittleEndian(array.storage, to: &out)
        return out
    }

    /// Writes `array` to `path` atomically (see `writeFileAtomically`).
    public static func write(_ array: HostArray, to path: String) throws {
        try writeFileAtomically(encode(array), to: path)
    }

    /// What the header says about the data that follows it.
    struct Header {
        var elementType: ElementType
        var bigEndian: Bool
        var fortranOrder: Bool
        var shape: [Int]
        var descr: String
        var dataOffset: Int
        var count: Int
        var byteCount: Int
    }

    static func load(from source: ByteSource) throws -> HostArray {
        let header = try readHeader(from: source)
        let storage = try loadStorage(
            header.elementType, count: header.count,
            bigEndian: header.bigEndian, from: source,
            at: header.dataOffset)
        if header.fortranOrder, header.shape.count > 1 {
            return HostArray(
                shape: header.shape,
                storage: fortranToRowMajor(storage, shape: header.shape))
        }
        return HostArray(shape: header.shape, storage: storage)
    }

    /// Parses and validates the preamble and header, including that the
    /// file holds exactly the data the header describes.
    static func readHeader(from source: ByteSource) throws -> Header {
        func fail(_ message: String) -> FileFormatError {
            FileFormatError(file: source.label, message: message)
        }
        let size = source.size
        if size == 0 {
            throw fail(
                "file is empty; expected an npy file starting with \\x93NUMPY")
        }
        let first = try source.bytes(at: 0, count: min(size, 12))
        if first.count < magic.count,
            Array(magic[0..<first.count]) == first
        {
            throw fail(
                "file is \(size) bytes, truncated inside the npy magic; "
                    + "expected at least the 10-byte npy preamble")
        }
        if Array(first.prefix(magic.count)) != magic {
            let found = first.prefix(magic.count).map(hex)
                .joined(separator: " ")
            throw fail(
                "expected the npy magic \\x93NUMPY at the start of the file, "
                    + "found \(found)")
        }
        if first.count < 8 {
            throw fail(
                "file is \(size) bytes, truncated inside the npy preamble; "
                    + "expected the magic, 2 version bytes and a header length")
        }
        let lengthBytes: Int
        switch (first[6], first[7]) {
        case (1, 0): lengthBytes = 2
        case (2, 0), (3, 0): lengthBytes = 4
        default:
            throw fail(
                "npy format version \(first[6]).\(first[7]) is not "
                    + "supported; expected 1.0, 2.0 or 3.0")
        }
        let headerStart = 8 + lengthBytes
        if size < headerStart {
            throw fail(
                "file is \(size) bytes, truncated inside the npy preamble; "
                    + "expected a \(lengthBytes)-byte header length at byte 8")
        }
        var headerLength = 0
        for i in 0..<lengthBytes {
            headerLength |= Int(first[8 + i]) << (8 * i)
        }
        if headerLength > size - headerStart {
            throw fail(
                "header length \(headerLength) runs past the end of the file "
                    + "(\(size - headerStart) bytes after the preamble); "
                    + "the file is truncated or not an npy file")
        }
        if headerLength > maxHeaderLength {
            throw fail(
                "header length \(headerLength) is over the "
                    + "\(maxHeaderLength)-byte limit for npy headers")
        }
        let text = try source.bytes(at: headerStart, count: headerLength)
        if first[6] == 3, String(validating: text, as: UTF8.self) == nil {
            throw fail("version 3.0 header is not valid UTF-8")
        }
        var header = try parseDictionary(text, fail: fail)
        header.dataOffset = headerStart + headerLength

        let available = size - header.dataOffset
        let what = "shape \(tupleText(header.shape)) of '\(header.descr)'"
        if header.byteCount > available {
            throw fail(
                "header promises \(describeBytes(header.byteCount)) of data "
                    + "(\(what)) but only \(available) bytes follow the "
                    + "header; the file is truncated")
        }
        if header.byteCount < available {
            throw fail(
                "\(available - header.byteCount) bytes follow the "
                    + "\(header.byteCount) bytes of data (\(what)); "
                    + "expected the file to end with the data")
        }
        if header.byteCount > source.allocationLimit {
            throw fail(
                "the data (\(what)) is \(describeBytes(header.byteCount)), "
                    + "more than this machine's "
                    + "\(describeBytes(source.allocationLimit)) of memory")
        }
        return header
    }

    /// Checks the keys and values of the header dict.
    private static func parseDictionary(
        _ text: [UInt8], fail: (String) -> FileFormatError
    ) throws -> Header {
        var parser = PythonLiteralParser(text)
        let entries: [(key: String, value: PythonLiteral)]
        do {
            entries = try parser.parseDict()
        } catch let failure as PythonLiteralParser.Failure {
            throw fail("malformed header dictionary: \(failure.message)")
        }
        let expected = ["descr", "fortran_order", "shape"]
        for entry in entries where !expected.contains(entry.key) {
            throw fail(
                "unexpected key '\(entry.key)' in the header; expected "
                    + "exactly 'descr', 'fortran_order' and 'shape'")
        }
        func value(_ key: String) throws -> PythonLiteral {
            guard let entry = entries.first(where: { $0.key == key }) else {
                throw fail(
                    "header has no '\(key)' key; expected 'descr', "
                        + "'fortran_order' and 'shape'")
            }
            return entry.value
        }

        let descr: String
        switch try value("descr") {
        case .string(let text): descr = text
        case .list:
            throw fail(
                "'descr' is a list, a structured dtype; expected one of "
                    + supportedText)
        default:
            throw fail(
                "'descr' is not a string; expected one of "
                    + supportedText)
        }
        guard let (type, bigEndian) = parseDescr(descr) else {
            throw fail(
                "dtype '\(descr)' is not supported; expected one of "
                    + supportedText)
        }

        guard case .boolean(let fortran) = try value("fortran_order") else {
            throw fail("'fortran_order' is not True or False")
        }

        guard case .tuple(let items) = try value("shape") else {
            throw fail("'shape' is not a tuple; expected e.g. (3, 4)")
        }
        var shape: [Int] = []
        for item in items {
            guard case .integer(let dim) = item else {
                throw fail("'shape' holds a non-integer; expected e.g. (3, 4)")
            }
            if dim < 0 {
                throw fail(
                    "'shape' \(tupleText(items.map(intValue))) has a negative "
                        + "dimension; expected non-negative integers")
            }
            shape.append(dim)
        }
        guard let count = elementCount(of: shape) else {
            throw fail(
                "'shape' \(tupleText(shape)) has more elements than a "
                    + "64-bit Int can count")
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(
            by: type.byteSize)
        if overflow {
            throw fail(
                "'shape' \(tupleText(shape)) of '\(descr)' needs more bytes "
                    + "than a 64-bit Int can count")
        }
        return Header(
            elementType: type, bigEndian: bigEndian, fortranOrder: fortran,
            shape: shape, descr: descr, dataOffset: 0, count: count,
            byteCount: byteCount)
    }

    private static let supportedText =
        "'<f4', '<f8', '<i4', '<i8' or big-endian '>f4', '>f8', '>i4', '>i8'"

    private static func intValue(_ item: PythonLiteral) -> Int {
        if case .integer(let value) = item { return value }
        return 0
    }

    /// The element type and byte order of a supported descriptor.
    static func parseDescr(_ descr: String) -> (ElementType, Bool)? {
        guard descr.count == 3, let order = descr.first else { return nil }
        let bigEndian: Bool
        switch order {
        case "<": bigEndian = false
        case ">": bigEndian = true
        default: return nil
        }
        switch descr.dropFirst() {
        case "f4": return (.float32, bigEndian)
        case "f8": return (.float64, bigEndian)
        case "i4": return (.int32, bigEndian)
        case "i8": return (.int64, bigEndian)
        default: return nil
        }
    }

    private static func descr(of type: ElementType) -> String {
        switch type {
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .int32: return "<i4"
        case .int64: return "<i8"
        }
    }

    /// A shape as Python writes a tuple: `()`, `(3,)`, `(3, 4)`.
    static func tupleText(_ shape: [Int]) -> String {
        if shape.count == 1 { return "(\(shape[0]),)" }
        return "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    /// Reorders column-major elements (first index fastest) into row-major
    /// order (last index fastest).
    static func fortranToRowMajor(
        _ storage: HostArray.Storage, shape: [Int]
    ) -> HostArray.Storage {
        switch storage {
        case .float32(let v): return .float32(transpose(v, shape: shape))
        case .float64(let v): return .float64(transpose(v, shape: shape))
        case .int32(let v): return .int32(transpose(v, shape: shape))
        case .int64(let v): return .int64(transpose(v, shape: shape))
        }
    }

    private static func transpose<T>(_ source: [T], shape: [Int]) -> [T] {
        guard !source.isEmpty else { return source }
        let rank = shape.count
        // Column-major strides: the first index moves by one element.
        var strides = [Int](repeating: 1, count: rank)
        for axis in 1..<rank {
            strides[axis] = strides[axis - 1] * shape[axis - 1]
        }
        var index = [Int](repeating: 0, count: rank)
        var offset = 0
        var result: [T] = []
        result.reserveCapacity(source.count)
        // Walk the output in row-major order, carrying the column-major
        // offset along like an odometer.
        for _ in 0..<source.count {
            result.append(source[offset])
            var axis = rank - 1
            while axis >= 0 {
                index[axis] += 1
                offset += strides[axis]
                if index[axis] < shape[axis] { break }
                offset -= strides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }
}
