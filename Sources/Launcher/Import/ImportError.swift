import Foundation

/// A problem with the input of an import (the CSV, a vocabulary file, a
/// prepare.json), located as precisely as it is known: the file, the data
/// row (1-based, the header row not counted), the physical line of the file
/// where the offending field starts, and the column.
///
/// The dispatcher prints `description` once on stderr and exits non-zero.
struct ImportError: Error, CustomStringConvertible {
    var file: String
    var row: Int?
    var line: Int?
    var column: String?
    var message: String

    init(
        file: String, row: Int? = nil, line: Int? = nil,
        column: String? = nil, _ message: String
    ) {
        self.file = file
        self.row = row
        self.line = line
        self.column = column
        self.message = message
    }

    var description: String {
        var place = file
        switch (row, line) {
        case let (row?, line?): place += ": data row \(row) (line \(line))"
        case let (row?, nil): place += ": data row \(row)"
        case let (nil, line?): place += ": line \(line)"
        case (nil, nil): break
        }
        if let column { place += ", column '\(column)'" }
        return "\(place): \(message)"
    }
}

/// Shows a value inside an error message: quoted, shortened when long, with
/// line breaks made visible.
func quotedForMessage(_ value: String, limit: Int = 60) -> String {
    var text = value.replacingOccurrences(of: "\r", with: "\\r")
        .replacingOccurrences(of: "\n", with: "\\n")
    if text.count > limit { text = String(text.prefix(limit)) + "..." }
    return "'\(text)'"
}
