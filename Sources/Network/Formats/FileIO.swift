import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where a reader gets its bytes: a file read piece by piece, or bytes
/// already in memory.
///
/// Both formats decode through this one interface so that the pure
/// `decode` functions, which the hostile-input tests drive, run exactly
/// the checks that reading a file runs. Callers check every offset and
/// count against `size` before asking for bytes, so a source never has to
/// guess how much to allocate.
protocol ByteSource {
    /// The name used in error messages.
    var label: String { get }
    /// Total number of bytes available.
    var size: Int { get }
    /// The most element data a reader may allocate for this source.
    var allocationLimit: Int { get }
    /// `count` bytes starting at `offset`; the range lies within `size`.
    func bytes(at offset: Int, count: Int) throws -> [UInt8]
    /// Fills `buffer` with the bytes starting at `offset`.
    func copy(at offset: Int, into buffer: UnsafeMutableRawBufferPointer)
        throws
}

/// Bytes already in memory; the claimed sizes are checked against
/// `bytes.count`, which is the only limit that matters here.
struct MemorySource: ByteSource {
    let bytes: [UInt8]
    let label: String

    var size: Int { bytes.count }
    var allocationLimit: Int { Int.max }

    func bytes(at offset: Int, count: Int) throws -> [UInt8] {
        Array(bytes[offset..<offset + count])
    }

    func copy(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        guard buffer.count > 0 else { return }
        bytes.withUnsafeBytes { all in
            let part = UnsafeRawBufferPointer(
                rebasing: all[offset..<offset + buffer.count])
            buffer.copyMemory(from: part)
        }
    }
}

/// An open regular file, read with `pread` so that only the header and
/// then the validated data ranges are ever loaded.
final class FileSource: ByteSource {
    let label: String
    let size: Int
    private let descriptor: Int32

    /// Opens `path` and records its size from `fstat`.
    init(path: String) throws {
        label = path
        // O_NONBLOCK keeps a FIFO from hanging the open; it has no effect
        // on the regular files that pass the check below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            throw FileFormatError(
                file: path, message: "cannot open for reading: \(osError())")
        }
        var info = stat()
        if fstat(fd, &info) != 0 {
            let reason = osError()
            close(fd)
            throw FileFormatError(
                file: path, message: "cannot stat: \(reason)")
        }
        if (info.st_mode & S_IFMT) != S_IFREG {
            close(fd)
            let kind =
                (info.st_mode & S_IFMT) == S_IFDIR
                ? "a directory" : "not a regular file"
            throw FileFormatError(
                file: path,
                message: "is \(kind); expected a regular file")
        }
        descriptor = fd
        size = Int(info.st_size)
    }

    deinit { close(descriptor) }

    /// Physical memory: a file whose data alone is larger cannot be
    /// loaded, and trying would end in an allocation failure, which traps.
    var allocationLimit: Int {
        Int(clamping: ProcessInfo.processInfo.physicalMemory)
    }

    func bytes(at offset: Int, count: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, done in
            try copy(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
            done = count
        }
    }

    func copy(at offset: Int, into buffer: UnsafeMutableRawBufferPointer)
        throws
    {
        var filled = 0
        while filled < buffer.count {
            let got = pread(
                descriptor, buffer.baseAddress! + filled,
                buffer.count - filled, off_t(offset + filled))
            if got < 0 {
                if errno == EINTR { continue }
                throw FileFormatError(
                    file: label,
                    message: "read failed at byte \(offset + filled): "
                        + osError())
            }
            if got == 0 {
                // fstat said the bytes were there; the file shrank since.
                throw FileFormatError(
                    file: label,
                    message: "file ended at byte \(offset + filled) while "
                        + "reading; expected \(size) bytes (was it changed "
                        + "while being read?)")
            }
            filled += got
        }
    }
}

/// The text for the current `errno`.
func osError() -> String {
    String(cString: strerror(errno))
}

/// Writes `bytes` to `path` so that readers see either the old file or the
/// complete new one, never a partial write.
///
/// The bytes go to a temporary file in the same directory (a rename is
/// only atomic within one file system), which is flushed with `fsync`
/// and then renamed over `path`; finally the directory is flushed, best
/// effort, so that the rename itself survives a crash. On any failure the
/// temporary file is removed and the error names `path` and the OS reason
/// (`strerror`). The new file gets mode 0644 less the umask.
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    try bytes.withUnsafeBytes { raw in
        try writeFileAtomically(pieces: [raw], to: path)
    }
}

/// As `writeFileAtomically(_:to:)`, for a file made of several pieces of
/// memory written one after another, so that large buffers (a model's
/// weights) need not be copied into one array first.
public func writeFileAtomically(
    pieces: [UnsafeRawBufferPointer], to path: String
) throws {
    func fail(_ what: String) -> FileFormatError {
        FileFormatError(file: path, message: "\(what): \(osError())")
    }
    if path.isEmpty || path.hasSuffix("/") {
        throw FileFormatError(
            file: path, message: "expected a file path, not a directory")
    }
    let directory: String
    let name: String
    if let slash = path.lastIndex(of: "/") {
        directory =
            slash == path.startIndex
            ? "/" : String(path[..<slash])
        name = String(path[path.index(after: slash)...])
    } else {
        directory = "."
        name = path
    }
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let temporary =
        (directory == "/" ? "" : directory)
        + "/.\(name).tmp-\(getpid())-\(suffix)"

    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    if fd < 0 {
        throw fail("cannot create temporary file \(temporary)")
    }
    var failure: FileFormatError?
    for raw in pieces where failure == nil && raw.count > 0 {
        var written = 0
        while written < raw.count {
            let n = write(fd, raw.baseAddress! + written, raw.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                failure = fail("cannot write \(temporary)")
                break
            }
            written += n
        }
    }
    if failure == nil, fsync(fd) != 0 {
        failure = fail("cannot fsync \(temporary)")
    }
    // close can report a deferred write error (for example on NFS).
    if close(fd) != 0, failure == nil {
        failure = fail("cannot close \(temporary)")
    }
    if failure == nil, rename(temporary, path) != 0 {
        failure = fail("cannot rename \(temporary) to the target")
    }
    if let failure {
        unlink(temporary)
        throw failure
    }
    let dirFD = open(directory, O_RDONLY | O_CLOEXEC)
    if dirFD >= 0 {
        // Best effort: some file systems refuse fsync on directories.
        _ = fsync(dirFD)
        close(dirFD)
    }
}

/// Whether this machine stores integers least significant byte first.
let hostIsLittleEndian = 1.littleEndian == 1

/// An element type as held in memory, with the byte swap that converts
/// between the file's and the host's byte order.
protocol FileElement {
    var byteSwappedValue: Self { get }
}

extension Float: FileElement {
    var byteSwappedValue: Float { Float(bitPattern: bitPattern.byteSwapped) }
}

extension Double: FileElement {
    var byteSwappedValue: Double {
        Double(bitPattern: bitPattern.byteSwapped)
    }
}

extension Int32: FileElement {
    var byteSwappedValue: Int32 { byteSwapped }
}

extension Int64: FileElement {
    var byteSwappedValue: Int64 { byteSwapped }
}

/// Reads `count` elements straight into a new array, so the data is in
/// memory once rather than first as bytes and then as values.
///
/// The caller has checked that the range lies in the source and fits in
/// memory.
func loadElements<T: FileElement>(
    _: T.Type, count: Int, bigEndian: Bool, from source: ByteSource,
    at offset: Int
) throws -> [T] {
    var values = try [T](unsafeUninitializedCapacity: count) { buf, done in
        try source.copy(at: offset, into: UnsafeMutableRawBufferPointer(buf))
        done = count
    }
    if bigEndian == hostIsLittleEndian {
        values.withUnsafeMutableBufferPointer { buf in
            for i in buf.indices { buf[i] = buf[i].byteSwappedValue }
        }
    }
    return values
}

/// Reads the elements of one array of `type`, as typed storage.
func loadStorage(
    _ type: ElementType, count: Int, bigEndian: Bool,
    from source: ByteSource, at offset: Int
) throws -> HostArray.Storage {
    switch type {
    case .float32:
        return .float32(
            try loadElements(
                Float.self, count: count, bigEndian: bigEndian, from: source,
                at: offset))
    case .float64:
        return .float64(
            try loadElements(
                Double.self, count: count, bigEndian: bigEndian, from: source,
                at: offset))
    case .int32:
        return .int32(
            try loadElements(
                Int32.self, count: count, bigEndian: bigEndian, from: source,
                at: offset))
    case .int64:
        return .int64(
            try loadElements(
                Int64.self, count: count, bigEndian: bigEndian, from: source,
                at: offset))
    }
}

/// Appends the elements in little-endian byte order.
func appendLittleEndian(_ storage: HostArray.Storage, to out: inout [UInt8]) {
    func append<T: FileElement>(_ values: [T]) {
        if hostIsLittleEndian {
            values.withUnsafeBytes { out.append(contentsOf: $0) }
        } else {
            values.map { $0.byteSwappedValue }
                .withUnsafeBytes { out.append(contentsOf: $0) }
        }
    }
    switch storage {
    case .float32(let v): append(v)
    case .float64(let v): append(v)
    case .int32(let v): append(v)
    case .int64(let v): append(v)
    }
}

/// A byte count for messages, with a binary unit for big ones.
func describeBytes(_ n: Int) -> String {
    if n < 1 << 20 { return "\(n) bytes" }
    let gib = Double(n) / Double(1 << 30)
    return "\(n) bytes (\(String(format: "%.1f", gib)) GiB)"
}
