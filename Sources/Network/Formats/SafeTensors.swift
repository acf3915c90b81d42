/// Reads and writes `.safetensors` files.
///
/// A file is an 8-byte little-endian header length N, N bytes of UTF-8
/// JSON mapping each tensor name to
/// `{"dtype": ..., "shape": [...], "data_offsets": [begin, end]}` (plus an
/// optional `"__metadata__"` object of strings), then the raw
/// little-endian row-major data; offsets count from the end of the header.
///
/// Only the dtypes `F32`, `F64`, `I32` and `I64` are read; any other is
/// refused with an error that names it. The reader validates the whole
/// header against the file size before allocating any data: every range
/// must lie in the file and hold exactly shape-product times element-size
/// bytes, ranges must not overlap (gaps are allowed), names must be
/// unique, each entry must have exactly the three keys above, and the
/// header must be strict JSON of at most 100 MB (the limit the reference
/// Rust implementation also applies).
public enum SafeTensors {
    static let maxHeaderLength = 100_000_000
    static let metadataKey = "__metadata__"

    /// Tensors in file order (by data offset).
    public static func read(contentsOf path: String) throws
        -> [(name: String, array: HostArray)]
    {
        try load(from: FileSource(path: path))
    }

    /// Decodes the bytes of a `.safetensors` file; `file` names it in
    /// errors. Tensors come in file order (by data offset).
    public static func decode(_ bytes: [UInt8], file: String) throws
        -> [(name: String, array: HostArray)]
    {
        try load(from: MemorySource(bytes: bytes, label: file))
    }

    /// The bytes of a `.safetensors` file holding `tensors` in the given
    /// order, with the header padded with spaces to a multiple of 8 bytes
    /// as the Python library does. Throws when a name repeats or is
    /// `__metadata__`; the error's `file` is `<encode>`.
    public static func encode(
        _ tensors: [(name: String, array: HostArray)],
        metadata: [String: String] = [:]
    ) throws -> [UInt8] {
        try encode(tensors, metadata: metadata, label: "<encode>")
    }

    /// Writes `tensors` to `path` atomically (see `writeFileAtomically`).
    public static func write(
        _ tensors: [(name: String, array: HostArray)], to path: String,
        metadata: [String: String] = [:]
    ) throws {
        let bytes = try encode(tensors, metadata: metadata, label: path)
        try writeFileAtomically(bytes, to: path)
    }

    /// The `"__metadata__"` entry of the file at `path`, `[:]` if it has
    /// none. The whole header is validated; the data is not read.
    public static func readMetadata(contentsOf path: String) throws
        -> [String: String]
    {
        try readHeader(from: FileSource(path: path)).metadata
    }

    /// The `"__metadata__"` entry of the `.safetensors` bytes `bytes`, `[:]`
    /// if there is none; `file` names them in errors. The whole header is
    /// validated, as by `decode`.
    public static func decodeMetadata(_ bytes: [UInt8], file: String) throws
        -> [String: String]
    {
        try readHeader(from: MemorySource(bytes: bytes, label: file)).metadata
    }

    /// One tensor's header entry, validated.
    struct Entry {
        var name: String
        var elementType: ElementType
        var shape: [Int]
        var count: Int
        var begin: Int
        var end: Int
    }

    /// A validated header: entries in file order and where data starts.
    struct Header {
        var entries: [Entry]
        var metadata: [String: String]
        var dataStart: Int
    }

    static func load(from source: ByteSource) throws
        -> [(name: String, array: HostArray)]
    {
        let header = try readHeader(from: source)
        return try header.entries.map { entry in
            let storage = try loadStorage(
                entry.elementType, count: entry.count, bigEndian: false,
                from: source, at: header.dataStart + entry.begin)
            return (entry.name, HostArray(shape: entry.shape, storage: storage))
        }
    }

    static func readHeader(from source: ByteSource) throws -> Header {
        func fail(_ message: String) -> FileFormatError {
            FileFormatError(file: source.label, message: message)
        }
        let size = source.size
        if size < 8 {
            throw fail(
                "file is \(size) bytes; expected at least the 8-byte "
                    + "little-endian header length of a safetensors file")
        }
        let lengthBytes = try source.bytes(at: 0, count: 8)
        var claimed: UInt64 = 0
        for (i, byte) in lengthBytes.enumerated() {
            claimed |= UInt64(byte) << (8 * UInt64(i))
        }
        if claimed > UInt64(size - 8) {
            throw fail(
                "header length \(claimed) runs past the end of the file "
                    + "(\(size - 8) bytes after the length field); the file "
                    + "is truncated or not a safetensors file")
        }
        let headerLength = Int(claimed)
        if headerLength > maxHeaderLength {
            throw fail(
                "header length \(headerLength) is over the "
                    + "\(maxHeaderLength)-byte limit for safetensors headers")
        }
        let dataStart = 8 + headerLength
        let dataSize = size - dataStart
        let text = try source.bytes(at: 8, count: headerLength)
        if String(validating: text, as: UTF8.self) == nil {
            throw fail("header is not valid UTF-8; expected UTF-8 JSON")
        }
        var parser = JSONParser(text)
        let document: JSONValue
        do {
            document = try parser.parseDocument()
        } catch let failure as JSONParser.Failure {
            throw fail("header is not valid JSON: \(failure.message)")
        }
        guard case .object(let members) = document else {
            throw fail(
                "header JSON is \(document.kind); expected an object "
                    + "mapping tensor names to dtype, shape and data_offsets")
        }

        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in members {
            if name == metadataKey {
                metadata = try parseMetadata(value, fail: fail)
                continue
            }
            let entry = try parseEntry(name, value, fail: fail)
            if entry.end > dataSize {
                throw fail(
                    "tensor '\(name)' has data_offsets [\(entry.begin), "
                        + "\(entry.end)] past the end of the data "
                        + "(\(dataSize) bytes after the header)")
            }
            entries.append(entry)
        }

        // File order; ties (empty tensors) keep header order.
        let order = entries.indices.sorted {
            (entries[$0].begin, entries[$0].end, $0)
                < (entries[$1].begin, entries[$1].end, $1)
        }
        entries = order.map { entries[$0] }
        var previous: Entry?
        var total = 0
        for entry in entries where entry.end > entry.begin {
            if let previous, entry.begin < previous.end {
                throw fail(
                    "tensors '\(previous.name)' [\(previous.begin), "
                        + "\(previous.end)] and '\(entry.name)' "
                        + "[\(entry.begin), \(entry.end)] overlap; expected "
                        + "disjoint data_offsets")
            }
            // Sorted by start, so the latest start has the furthest end.
            previous = entry
            total += entry.end - entry.begin
        }
        if total > source.allocationLimit {
            throw fail(
                "the tensors need \(describeBytes(total)), more than this "
                    + "machine's \(describeBytes(source.allocationLimit)) "
                    + "of memory")
        }
        return Header(
            entries: entries, metadata: metadata,
            dataStart: dataStart)
    }

    private static func parseMetadata(
        _ value: JSONValue, fail: (String) -> FileFormatError
    ) throws -> [String: String] {
        guard case .object(let members) = value else {
            throw fail(
                "\"\(metadataKey)\" is \(value.kind); expected an object "
                    + "of strings")
        }
        var result: [String: String] = [:]
        for (key, item) in members {
            guard case .string(let text) = item else {
                throw fail(
                    "\"\(metadataKey)\" entry \"\(key)\" is \(item.kind); "
                        + "expected a string")
            }
            result[key] = text
        }
        return result
    }

    private static func parseEntry(
        _ name: String, _ value: JSONValue,
        fail: (String) -> FileFormatError
    ) throws -> Entry {
        guard case .object(let members) = value else {
            throw fail(
                "tensor '\(name)' is \(value.kind); expected an object "
                    + "with dtype, shape and data_offsets")
        }
        let keys = ["dtype", "shape", "data_offsets"]
        for member in members where !keys.contains(member.key) {
            throw fail(
                "tensor '\(name)' has unexpected key \"\(member.key)\"; "
                    + "expected only dtype, shape and data_offsets")
        }
        func field(_ key: String) throws -> JSONValue {
            guard let member = members.first(where: { $0.key == key }) else {
                throw fail("tensor '\(name)' has no \"\(key)\"")
            }
            return member.value
        }

        guard case .string(let dtype) = try field("dtype") else {
            throw fail("tensor '\(name)' dtype is not a string")
        }
        guard let type = elementType(dtype) else {
            throw fail(
                "tensor '\(name)' has dtype \"\(dtype)\", which is not "
                    + "supported; expected F32, F64, I32 or I64")
        }

        func integers(_ key: String) throws -> [Int] {
            let value = try field(key)
            guard case .array(let items) = value else {
                throw fail(
                    "tensor '\(name)' \(key) is \(value.kind); expected "
                        + "an array of non-negative integers")
            }
            return try items.map { item in
                guard case .number(let text) = item else {
                    throw fail(
                        "tensor '\(name)' \(key) holds \(item.kind); "
                            + "expected non-negative integers")
                }
                guard let number = Int(text), number >= 0,
                    text.first != "-"
                else {
                    let why =
                        text.first == "-"
                        ? "is negative"
                        : text.contains(where: { ".eE".contains($0) })
                            ? "is not an integer" : "is too large"
                    throw fail(
                        "tensor '\(name)' \(key) value \(text) \(why); "
                            + "expected non-negative integers below 2^63")
                }
                return number
            }
        }

        let shape = try integers("shape")
        let offsets = try integers("data_offsets")
        guard offsets.count == 2, offsets[0] <= offsets[1] else {
            throw fail(
                "tensor '\(name)' data_offsets \(offsets) is not "
                    + "[begin, end] with begin <= end")
        }
        guard let count = elementCount(of: shape) else {
            throw fail(
                "tensor '\(name)' shape \(shape) has more elements than a "
                    + "64-bit Int can count")
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(
            by: type.byteSize)
        if overflow {
            throw fail(
                "tensor '\(name)' shape \(shape) of \(dtype) needs more "
                    + "bytes than a 64-bit Int can count")
        }
        if offsets[1] - offsets[0] != byteCount {
            throw fail(
                "tensor '\(name)' shape \(shape) of \(dtype) needs "
                    + "\(byteCount) bytes but data_offsets \(offsets) span "
                    + "\(offsets[1] - offsets[0])")
        }
        return Entry(
            name: name, elementType: type, shape: shape, count: count,
            begin: offsets[0], end: offsets[1])
    }

    private static func elementType(_ dtype: String) -> ElementType? {
        switch dtype {
        case "F32": return .float32
        case "F64": return .float64
        case "I32": return .int32
        case "I64": return .int64
        default: return nil
        }
    }

    private static func dtypeName(_ type: ElementType) -> String {
        switch type {
        case .float32: return "F32"
        case .float64: return "F64"
        case .int32: return "I32"
        case .int64: return "I64"
        }
    }

    static func encode(
        _ tensors: [(name: String, array: HostArray)],
        metadata: [String: String], label: String
    ) throws -> [UInt8] {
        let (prefix, dataBytes) = try header(
            tensors.map { ($0.name, $0.array.elementType, $0.array.shape) },
            metadata: metadata, label: label)
        var out: [UInt8] = []
        out.reserveCapacity(prefix.count + dataBytes)
        out += prefix
        for (_, array) in tensors {
            appendLittleEndian(array.storage, to: &out)
        }
        return out
    }

    /// Writes float32 tensors straight from memory (for example views into
    /// a model's flat parameter buffer), atomically, without first copying
    /// them into one array. The file is the same as `write` makes.
    public static func writeFloat32(
        _ tensors: [(
            name: String, shape: [Int], values: UnsafeBufferPointer<Float>
        )],
        to path: String, metadata: [String: String] = [:]
    ) throws {
        guard hostIsLittleEndian else {
            // The raw memory is not the file's byte order: go the long way.
            try write(
                tensors.map {
                    (
                        name: $0.name,
                        array: HostArray(
                            shape: $0.shape, floats: Array($0.values))
                    )
                }, to: path, metadata: metadata)
            return
        }
        for tensor in tensors
        where tensor.shape.reduce(1, *) != tensor.values.count {
            throw FileFormatError(
                file: path,
                message: "tensor '\(tensor.name)' has \(tensor.values.count) "
                    + "values for shape \(tensor.shape)")
        }
        let (prefix, _) = try header(
            tensors.map { ($0.name, ElementType.float32, $0.shape) },
            metadata: metadata, label: path)
        try prefix.withUnsafeBytes { head in
            try writeFileAtomically(
                pieces: [head]
                    + tensors.map { UnsafeRawBufferPointer($0.values) },
                to: path)
        }
    }

    /// The length field and the JSON header (padded with spaces to a
    /// multiple of 8) for tensors stored in the given order, and the
    /// number of data bytes that follow.
    private static func header(
        _ tensors: [(name: String, type: ElementType, shape: [Int])],
        metadata: [String: String], label: String
    ) throws -> (bytes: [UInt8], dataBytes: Int) {
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            // Sorted so that the same tensors always give the same bytes.
            let entries = metadata.sorted { $0.key < $1.key }
                .map { (key: $0.key, value: JSONValue.string($0.value)) }
            members.append((metadataKey, .object(entries)))
        }
        var seen = Set<String>()
        var offset = 0
        for (name, type, shape) in tensors {
            if name == metadataKey {
                throw FileFormatError(
                    file: label,
                    message: "a tensor cannot be named \"\(metadataKey)\"; "
                        + "that key holds the metadata")
            }
            if !seen.insert(name).inserted {
                throw FileFormatError(
                    file: label,
                    message: "tensor name '\(name)' appears twice; expected "
                        + "unique names")
            }
            let end = offset + shape.reduce(1, *) * type.byteSize
            let entry: [(key: String, value: JSONValue)] = [
                ("dtype", .string(dtypeName(type))),
                ("shape", .array(shape.map { .number("\($0)") })),
                (
                    "data_offsets",
                    .array([
                        .number("\(offset)"),
                        .number("\(end)"),
                    ])
                ),
            ]
            members.append((name, .object(entry)))
            offset = end
        }
        var json = ""
        JSONWriter.write(.object(members), to: &json)
        var header = Array(json.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count)
        let length = UInt64(header.count)
        for i in 0..<8 {
            out.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(i))))
        }
        return (out + header, offset)
    }
}
