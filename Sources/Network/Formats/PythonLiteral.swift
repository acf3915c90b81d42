/// A value in the header of a `.npy` file, which is the Python `repr` of
/// a dict.
enum PythonLiteral: Equatable {
    case string(String)
    case integer(Int)
    case boolean(Bool)
    case none
    case tuple([PythonLiteral])
    case list([PythonLiteral])
}

/// A strict parser for the small subset of Python literal syntax that
/// numpy writes into `.npy` headers, such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
///
/// It knows strings without escapes, decimal integers, `True`, `False`,
/// `None`, tuples and lists (for structured dtypes, so they can be named
/// in an error), and one top-level dict with string keys. Anything else,
/// including a repeated key, is an error with the byte offset, because a
/// header that is only almost right is more likely a damaged file than a
/// new numpy feature.
struct PythonLiteralParser {
    /// Errors carry only the message; the NPY reader adds the file name.
    struct Failure: Error {
        let message: String
    }

    private let bytes: [UInt8]
    private var position = 0
    private var depth = 0
    /// Deep enough for any header numpy writes; it keeps a hostile header
    /// of a million `(` from overflowing the stack.
    private let maxDepth = 32

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Parses the whole input as one dict followed only by whitespace.
    mutating func parseDict() throws -> [(key: String, value: PythonLiteral)] {
        skipWhitespace()
        try expect(UInt8(ascii: "{"), "'{' opening the header dictionary")
        var entries: [(key: String, value: PythonLiteral)] = []
        skipWhitespace()
        while peek() != UInt8(ascii: "}") {
            let keyOffset = position
            guard case .string(let key) = try parseValue() else {
                throw failure(at: keyOffset, "expected a quoted string key")
            }
            if entries.contains(where: { $0.key == key }) {
                throw failure(at: keyOffset, "key '\(key)' appears twice")
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after key '\(key)'")
            let value = try parseValue()
            entries.append((key, value))
            skipWhitespace()
            if peek() == UInt8(ascii: ",") {
                position += 1
                skipWhitespace()
            } else if peek() != UInt8(ascii: "}") {
                throw failure(
                    at: position,
                    "expected ',' or '}' after the value of '\(key)'")
            }
        }
        position += 1
        skipWhitespace()
        if position != bytes.count {
            throw failure(
                at: position, "expected only whitespace after the dictionary")
        }
        return entries
    }

    private mutating func parseValue() throws -> PythonLiteral {
        skipWhitespace()
        guard let byte = peek() else {
            throw failure(at: position, "expected a value, found the end")
        }
        switch byte {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "("):
            return .tuple(try parseSequence(closing: UInt8(ascii: ")")))
        case UInt8(ascii: "["):
            return .list(try parseSequence(closing: UInt8(ascii: "]")))
        case UInt8(ascii: "-"), UInt8(ascii: "+"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .integer(try parseInteger())
        default:
            if consumeWord("True") { return .boolean(true) }
            if consumeWord("False") { return .boolean(false) }
            if consumeWord("None") { return .none }
            throw failure(at: position, "expected a value")
        }
    }

    /// A tuple or list; `(3)` is a parenthesised integer in Python, not a
    /// tuple, so a one-element tuple needs its trailing comma.
    private mutating func parseSequence(closing: UInt8) throws
        -> [PythonLiteral]
    {
        let start = position
        depth += 1
        defer { depth -= 1 }
        if depth > maxDepth {
            throw failure(at: start, "nested more than \(maxDepth) deep")
        }
        position += 1
        var items: [PythonLiteral] = []
        var sawComma = false
        skipWhitespace()
        while peek() != closing {
            if peek() == nil {
                let opening = Character(Unicode.Scalar(bytes[start]))
                throw failure(at: start, "unclosed '\(opening)'")
            }
            items.append(try parseValue())
            skipWhitespace()
            if peek() == UInt8(ascii: ",") {
                sawComma = true
                position += 1
                skipWhitespace()
            } else if peek() != closing {
                throw failure(
                    at: position,
                    "expected ',' or '\(Character(Unicode.Scalar(closing)))'")
            } else {
                sawComma = false
            }
        }
        position += 1
        if closing == UInt8(ascii: ")"), items.count == 1, !sawComma {
            throw failure(
                at: start,
                "'(x)' is a parenthesised value, not a tuple; a "
                    + "one-element tuple is written '(x,)'")
        }
        return items
    }

    private mutating func parseString() throws -> String {
        let quote = bytes[position]
        let start = position
        position += 1
        var content: [UInt8] = []
        while true {
            guard let byte = peek() else {
                throw failure(at: start, "unterminated string")
            }
            position += 1
            if byte == quote { break }
            if byte == UInt8(ascii: "\\") {
                // numpy never writes escapes in these headers.
                throw failure(
                    at: position - 1, "escape sequences are not supported")
            }
            if byte < 0x20 || byte > 0x7E {
                throw failure(
                    at: position - 1,
                    "unexpected byte \(hex(byte)) in a string; expected "
                        + "printable ASCII")
            }
            content.append(byte)
        }
        return String(decoding: content, as: UTF8.self)
    }

    /// A decimal integer with an optional sign and, as Python 2 numpy
    /// wrote for long integers, an optional `L` suffix.
    private mutating func parseInteger() throws -> Int {
        let start = position
        var negative = false
        if peek() == UInt8(ascii: "-") || peek() == UInt8(ascii: "+") {
            negative = bytes[position] == UInt8(ascii: "-")
            position += 1
        }
        let digitsStart = position
        var value = 0
        while let byte = peek(), byte >= UInt8(ascii: "0"),
            byte <= UInt8(ascii: "9")
        {
            let digit = Int(byte - UInt8(ascii: "0"))
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) =
                negative
                ? times10.subtractingReportingOverflow(digit)
                : times10.addingReportingOverflow(digit)
            if o1 || o2 {
                throw failure(
                    at: start, "integer does not fit in a 64-bit Int")
            }
            value = next
            position += 1
        }
        let digitCount = position - digitsStart
        if digitCount == 0 {
            throw failure(at: start, "expected digits after the sign")
        }
        if digitCount > 1, bytes[digitsStart] == UInt8(ascii: "0") {
            throw failure(
                at: start, "leading zeros are not valid in a Python integer")
        }
        if peek() == UInt8(ascii: "L") { position += 1 }
        if let byte = peek(), isIdentifierByte(byte) {
            throw failure(at: position, "unexpected character after integer")
        }
        return value
    }

    private mutating func consumeWord(_ word: String) -> Bool {
        let utf8 = Array(word.utf8)
        let end = position + utf8.count
        guard end <= bytes.count, Array(bytes[position..<end]) == utf8 else {
            return false
        }
        if end < bytes.count, isIdentifierByte(bytes[end]) { return false }
        position = end
        return true
    }

    private func isIdentifierByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || byte == UInt8(ascii: "_")
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws {
        guard peek() == byte else {
            throw failure(at: position, "expected \(what)")
        }
        position += 1
    }

    private func peek() -> UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = peek(),
            byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
        {
            position += 1
        }
    }

    private func failure(at offset: Int, _ message: String) -> Failure {
        let found: String
        if offset < bytes.count {
            let byte = bytes[offset]
            found =
                byte >= 0x20 && byte < 0x7F
                ? "'\(Character(Unicode.Scalar(byte)))'" : hex(byte)
        } else {
            found = "the end"
        }
        return Failure(
            message: "\(message) at header byte \(offset) (found \(found))")
    }
}

/// `0xAB` style text for one byte.
func hex(_ byte: UInt8) -> String {
    let digits = String(byte, radix: 16, uppercase: true)
    return "0x" + (digits.count == 1 ? "0" + digits : digits)
}
