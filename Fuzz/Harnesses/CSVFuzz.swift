// libFuzzer harness for CSVTable(bytes:file:), the RFC 4180 reader behind
// `prepare` and `predict --csv`.
//
// Outcomes allowed: a table, or an ImportError. A table must be
// rectangular (fields = rows x header width, one start line per field,
// lines from 1 and never decreasing), its error helper must work on every
// field, and writing it back as RFC 4180 text must read back to the same
// header and fields.
@testable import LauncherImport

@_cdecl("LLVMFuzzerTestOneInput")
public func csvFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let table: CSVTable
    do {
        table = try CSVTable(bytes: bytes, file: "fuzz.csv")
    } catch is ImportError {
        return 0
    } catch {
        fuzzFail("CSVTable threw \(type(of: error)), not ImportError: \(error)")
    }
    let width = table.columnCount
    if width < 1 { fuzzFail("a table without columns was accepted") }
    if table.fields.count != table.rowCount * width {
        fuzzFail("\(table.fields.count) fields is not \(table.rowCount) rows x \(width)")
    }
    if table.fieldLines.count != table.fields.count {
        fuzzFail("\(table.fieldLines.count) field lines for \(table.fields.count) fields")
    }
    var previous: Int32 = 1
    for line in table.fieldLines {
        if line < previous { fuzzFail("field lines go backwards: \(table.fieldLines)") }
        previous = line
    }
    for row in 0..<table.rowCount {
        for column in 0..<width {
            let error = table.error(row: row, column: column, "check")
            if error.row != row + 1 || error.column != table.header[column] {
                fuzzFail("error(row:column:) names the wrong place: \(error)")
            }
        }
    }
    _ = try? table.columnIndex(table.header[0], option: "fuzz")

    let text = csvText(header: table.header, fields: table.fields, width: width)
    let again: CSVTable
    do {
        again = try CSVTable(bytes: Array(text.utf8), file: "roundtrip.csv")
    } catch {
        fuzzFail("the table written back does not read: \(error)")
    }
    // A value can hold CR LF (a lone CR, then a CRLF that the reader turned
    // into LF), which the reader turns into LF when it reads the value back;
    // apart from that the table must come back unchanged, byte for byte.
    let expectedHeader = table.header.map(crlfAsLF)
    let expectedFields = table.fields.map(crlfAsLF)
    if !sameBytes(again.header, expectedHeader) || !sameBytes(again.fields, expectedFields) {
        fuzzFail("round trip changed the table: \(table.header) \(table.fields) -> \(again.header) \(again.fields)")
    }
    return 0
}

/// `value` with each CR LF pair made LF, scanning left to right as the
/// reader does inside a quoted field.
func crlfAsLF(_ value: String) -> String {
    var out: [UInt8] = []
    let bytes = Array(value.utf8)
    var i = 0
    while i < bytes.count {
        if bytes[i] == 0x0D, i + 1 < bytes.count, bytes[i + 1] == 0x0A {
            i += 1
            continue
        }
        out.append(bytes[i])
        i += 1
    }
    return String(decoding: out, as: UTF8.self)
}

/// The table as RFC 4180 text with CRLF line ends. A field is quoted when
/// it holds a comma, quote or line break, when it is empty (so a
/// one-column row of "" is not a blank line, which the reader skips at the
/// end of the file), or when it starts with U+FEFF (which would otherwise
/// be read as the byte-order mark at the start of the file).
func csvText(header: [String], fields: [String], width: Int) -> String {
    func field(_ value: String) -> String {
        let special = value.utf8.contains {
            $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D
        }
        guard special || value.isEmpty || value.unicodeScalars.first == "\u{FEFF}"
        else { return value }
        var quoted = "\""
        for scalar in value.unicodeScalars {
            if scalar == "\"" { quoted += "\"\"" } else { quoted.unicodeScalars.append(scalar) }
        }
        return quoted + "\""
    }
    var text = header.map(field).joined(separator: ",") + "\r\n"
    var index = 0
    while index < fields.count {
        text += fields[index..<index + width].map(field).joined(separator: ",") + "\r\n"
        index += width
    }
    return text
}
