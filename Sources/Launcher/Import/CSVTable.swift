import Foundation

/// A CSV file read completely into memory: the header row and the data
/// records, every field decoded as a String.
///
/// The reader follows RFC 4180 with the tolerances real files need:
/// - a UTF-8 byte-order mark at the start is skipped;
/// - records may end in CRLF, LF or a lone CR, mixed freely;
/// - a field enclosed in double quotes may contain commas, quotes written
///   as `""`, and line breaks. A CRLF inside a quoted field is read as a
///   single LF, so a file saved with CRLF line ends gives the same field
///   values as the same file saved with LF;
/// - blank lines at the very end of the file are ignored.
/// Everything else is an error with the physical line number: a quote left
/// open, a quote inside an unquoted field, text after a closing quote, a
/// record with a different number of fields than the header, bytes that are
/// not UTF-8.
///
/// Line numbers count physical lines from 1 (the header starts on line 1);
/// each line break (CRLF, LF or lone CR) starts a new line, inside quoted
/// fields too. Data rows are numbered from 1, the header not counted.
struct CSVTable {
    /// The path as it was given, used in error messages.
    let file: String
    let header: [String]
    /// The data records, row-major: `fields[row * columnCount + column]`.
    private(set) var fields: [String] = []
    /// The physical line on which each field starts, parallel to `fields`.
    private(set) var fieldLines: [Int32] = []

    var columnCount: Int { header.count }
    var rowCount: Int { columnCount == 0 ? 0 : fields.count / columnCount }

    /// The field of data row `row` (0-based) in column `column`.
    func field(_ row: Int, _ column: Int) -> String {
        fields[row * columnCount + column]
    }

    /// The physical line where that field starts.
    func line(_ row: Int, _ column: Int) -> Int {
        Int(fieldLines[row * columnCount + column])
    }

    /// An error about one field, naming file, row, line and column.
    func error(row: Int, column: Int, _ message: String) -> ImportError {
        ImportError(
            file: file, row: row + 1, line: line(row, column),
            column: header[column], message)
    }

    /// The index of the column called `name`, for option `option`.
    /// Errors name the column and list the header's columns.
    func columnIndex(_ name: String, option: String) throws -> Int {
        let matches = header.indices.filter { header[$0] == name }
        let list = header.map { "'\($0)'" }.joined(separator: ", ")
        if matches.isEmpty {
            throw ImportError(
                file: file, line: 1,
                "no column '\(name)' (given with --\(option)); "
                    + "the header has \(header.count) columns: \(list)")
        }
        if matches.count > 1 {
            throw ImportError(
                file: file, line: 1,
                "the header has \(matches.count) columns named '\(name)' "
                    + "(given with --\(option)), so it is ambiguous; "
                    + "columns: \(list)")
        }
        return matches[0]
    }

    /// Reads and parses the file at `path`.
    static func read(path: String) throws -> CSVTable {
        guard let data = FileManager.default.contents(atPath: path) else {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(
                atPath: path, isDirectory: &isDirectory)
            throw ImportError(
                file: path,
                !exists
                    ? "no such file"
                    : isDirectory.boolValue
                        ? "is a directory, not a CSV file"
                        : "cannot be read")
        }
        return try CSVTable(bytes: [UInt8](data), file: path)
    }

    /// Parses CSV text given as bytes; `file` is only used in messages.
    init(bytes input: [UInt8], file: String) throws {
        self.file = file
        var start = 0
        if input.count >= 3, input[0] == 0xEF, input[1] == 0xBB,
            input[2] == 0xBF
        {
            start = 3
        }
        try CSVTable.checkUTF8(input, from: start, file: file)

        var parser = RecordParser(bytes: input, position: start, file: file)
        guard let headerRecord = try parser.next() else {
            throw ImportError(
                file: file, "the file is empty; expected a header row")
        }
        if headerRecord.isBlank {
            throw ImportError(
                file: file, line: 1,
                "the first line is empty; expected a header row")
        }
        header = headerRecord.values
        let width = header.count
        // A blank line is held back: it is an error only when a record
        // follows it (blank lines at the end of the file are ignored).
        var pendingBlank: (line: Int, count: Int)?
        while let record = try parser.next() {
            if record.isBlank {
                if pendingBlank == nil {
                    pendingBlank = (record.lines[0], 0)
                }
                pendingBlank!.count += 1
                continue
            }
            if let blank = pendingBlank {
                if width != 1 {
                    throw ImportError(
                        file: file, row: rowCount + 1, line: blank.line,
                        "empty line inside the data; every record needs "
                            + "\(width) fields")
                }
                // With a single column a blank line is an empty field.
                for _ in 0..<blank.count {
                    fields.append("")
                    fieldLines.append(Int32(blank.line))
                }
                pendingBlank = nil
            }
            if record.values.count != width {
                throw ImportError(
                    file: file, row: rowCount + 1, line: record.lines[0],
                    "found \(record.values.count) fields, expected "
                        + "\(width) as in the header (a field containing a "
                        + "comma must be enclosed in double quotes)")
            }
            fields.append(contentsOf: record.values)
            for line in record.lines { fieldLines.append(Int32(line)) }
        }
    }

    /// Throws naming the first line that holds bytes that are not UTF-8.
    private static func checkUTF8(
        _ bytes: [UInt8], from start: Int, file: String
    ) throws {
        if String(validating: bytes[start...], as: UTF8.self) != nil {
            return
        }
        // Line breaks are ASCII, so no valid sequence crosses one and each
        // line can be checked on its own.
        var line = 1
        var lineStart = start
        var index = start
        func check(_ end: Int) throws {
            if String(validating: bytes[lineStart..<end], as: UTF8.self) == nil
            {
                throw ImportError(
                    file: file, line: line,
                    "the text is not valid UTF-8 (save the file as UTF-8)")
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0A || byte == 0x0D {
                try check(index)
                if byte == 0x0D, index + 1 < bytes.count,
                    bytes[index + 1] == 0x0A
                {
                    index += 1
                }
                line += 1
                lineStart = index + 1
            }
            index += 1
        }
        try check(bytes.count)
    }
}

/// One record as the parser returns it.
private struct RawRecord {
    var values: [String]
    /// The line where each field starts.
    var lines: [Int]
    /// True for an empty line: one empty, unquoted field.
    var isBlank: Bool
}

/// Splits bytes into records, one call to `next()` each.
private struct RecordParser {
    let bytes: [UInt8]
    var position: Int
    let file: String
    var line = 1

    static let quote: UInt8 = 0x22
    static let comma: UInt8 = 0x2C
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A

    init(bytes: [UInt8], position: Int, file: String) {
        self.bytes = bytes
        self.position = position
        self.file = file
    }

    /// Consumes one line break at `position` (CRLF, LF or CR).
    private mutating func skipLineBreak() {
        if bytes[position] == Self.cr, position + 1 < bytes.count,
            bytes[position + 1] == Self.lf
        {
            position += 1
        }
        position += 1
        line += 1
    }

    /// The next record, or nil at the end of the input.
    mutating func next() throws -> RawRecord? {
        guard position < bytes.count else { return nil }
        var record = RawRecord(values: [], lines: [], isBlank: false)
        var quotedAny = false
        while true {
            record.lines.append(line)
            if position < bytes.count, bytes[position] == Self.quote {
                quotedAny = true
                record.values.append(try quotedField())
            } else {
                record.values.append(try plainField())
            }
            // The field ends at a comma, a line break or the end.
            if position >= bytes.count { break }
            let byte = bytes[position]
            if byte == Self.comma {
                position += 1
                continue
            }
            skipLineBreak()
            break
        }
        record.isBlank =
            !quotedAny && record.values.count == 1 && record.values[0].isEmpty
        return record
    }

    private mutating func plainField() throws -> String {
        let start = position
        while position < bytes.count {
            let byte = bytes[position]
            if byte == Self.comma || byte == Self.cr || byte == Self.lf {
                break
            }
            if byte == Self.quote {
                throw ImportError(
                    file: file, line: line,
                    "a double quote inside a field that does not start "
                        + "with one; enclose the field in double quotes "
                        + "and double the quote (\"\")")
            }
            position += 1
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    private mutating func quotedField() throws -> String {
        let openingLine = line
        position += 1  // the opening quote
        var value: [UInt8] = []
        var chunkStart = position
        while true {
            guard position < bytes.count else {
                throw ImportError(
                    file: file, line: openingLine,
                    "a quoted field opened on this line is never closed "
                        + "(missing closing double quote)")
            }
            let byte = bytes[position]
            if byte == Self.quote {
                value.append(contentsOf: bytes[chunkStart..<position])
                if position + 1 < bytes.count,
                    bytes[position + 1] == Self.quote
                {
                    value.append(Self.quote)
                    position += 2
                    chunkStart = position
                    continue
                }
                position += 1  // the closing quote
                break
            }
            if byte == Self.cr, position + 1 < bytes.count,
                bytes[position + 1] == Self.lf
            {
                // CRLF inside a field is kept as LF.
                value.append(contentsOf: bytes[chunkStart..<position])
                value.append(Self.lf)
                position += 2
                line += 1
                chunkStart = position
                continue
            }
            if byte == Self.cr || byte == Self.lf { line += 1 }
            position += 1
        }
        if position < bytes.count {
            let byte = bytes[position]
            if byte != Self.comma && byte != Self.cr && byte != Self.lf {
                throw ImportError(
                    file: file, line: line,
                    "unexpected text after the closing double quote of a "
                        + "quoted field (a quote inside a quoted field must "
                        + "be doubled: \"\")")
            }
        }
        return String(decoding: value, as: UTF8.self)
    }
}
