/// A JSON value from a safetensors header.
///
/// Objects keep their members in file order, and numbers keep their text,
/// so that offsets beyond 2^53 are not rounded through `Double` and a
/// fraction is never silently taken as an integer.
enum JSONValue {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(String)
    case boolean(Bool)
    case null

    /// A short name of the kind of value, for error messages.
    var kind: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .boolean: return "a boolean"
        case .null: return "null"
        }
    }
}

/// A strict JSON parser (RFC 8259): no comments, no trailing commas, no
/// NaN, and a key repeated within one object is an error, since a reader
/// that kept either copy could disagree with another reader.
struct JSONParser {
    /// Errors carry only the message; the caller adds the file name.
    struct Failure: Error {
        let message: String
    }

    private let bytes: [UInt8]
    private var position = 0
    private var depth = 0
    /// A safetensors header needs depth 3; the limit keeps a header of
    /// nested brackets from overflowing the stack.
    private let maxDepth = 64

    /// `bytes` must already be valid UTF-8; the parser only looks at the
    /// ASCII structure and copies other bytes through inside strings.
    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Parses one value surrounded only by whitespace.
    mutating func parseDocument() throws -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        if position != bytes.count {
            throw failure("expected the end of the JSON text")
        }
        return value
    }

    private mutating func parseValue() throws -> JSONValue {
        skipWhitespace()
        guard let byte = peek() else {
            throw failure("expected a JSON value")
        }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try parseNumber())
        default:
            if consume("true") { return .boolean(true) }
            if consume("false") { return .boolean(false) }
            if consume("null") { return .null }
            throw failure("expected a JSON value")
        }
    }

    private mutating func enter() throws {
        depth += 1
        if depth > maxDepth {
            throw failure("JSON nested more than \(maxDepth) deep")
        }
    }

    private mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1
        var members: [(key: String, value: JSONValue)] = []
        var seen = Set<String>()
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else {
                throw failure("expected a string key")
            }
            let keyStart = position
            let key = try parseString()
            if !seen.insert(key).inserted {
                position = keyStart
                throw failure("key \"\(key)\" appears twice in one object")
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after a key")
            members.append((key, try parseValue()))
            skipWhitespace()
            if peek() == UInt8(ascii: ",") {
                position += 1
                continue
            }
            try expect(UInt8(ascii: "}"), "',' or '}' in an object")
            return .object(members)
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            position += 1
            return .array(items)
        }
        while true {
            items.append(try parseValue())
            skipWhitespace()
            if peek() == UInt8(ascii: ",") {
                position += 1
                continue
            }
            try expect(UInt8(ascii: "]"), "',' or ']' in an array")
            return .array(items)
        }
    }

    private mutating func parseString() throws -> String {
        let start = position
        position += 1
        var out: [UInt8] = []
        while true {
            guard let byte = peek() else {
                position = start
                throw failure("unterminated string")
            }
            if byte == UInt8(ascii: "\"") {
                position += 1
                return String(decoding: out, as: UTF8.self)
            }
            if byte < 0x20 {
                throw failure(
                    "control character in a string; expected a \\u escape")
            }
            if byte != UInt8(ascii: "\\") {
                out.append(byte)
                position += 1
                continue
            }
            position += 1
            guard let escape = peek() else {
                throw failure("unterminated escape")
            }
            position += 1
            switch escape {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let scalar = try parseUnicodeEscape()
                out.append(contentsOf: Array(String(scalar).utf8))
            default:
                position -= 1
                throw failure("unknown escape")
            }
        }
    }

    /// The scalar of a `\uXXXX` escape (after the `u`), joining a UTF-16
    /// surrogate pair; a lone surrogate is an error, as it is no character.
    private mutating func parseUnicodeEscape() throws -> Unicode.Scalar {
        let high = try parseHex4()
        if (0xDC00...0xDFFF).contains(high) {
            throw failure("lone low surrogate in \\u escape")
        }
        if !(0xD800...0xDBFF).contains(high) {
            return Unicode.Scalar(high)!
        }
        guard consume("\\u") else {
            throw failure("high surrogate not followed by a low one")
        }
        let low = try parseHex4()
        guard (0xDC00...0xDFFF).contains(low) else {
            throw failure("high surrogate not followed by a low one")
        }
        let value = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        return Unicode.Scalar(value)!
    }

    private mutating func parseHex4() throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek() else {
                throw failure("expected 4 hex digits")
            }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"):
                digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"):
                digit = byte - UInt8(ascii: "A") + 10
            default:
                throw failure("expected 4 hex digits")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// The text of a number in JSON's grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private mutating func parseNumber() throws -> String {
        let start = position
        if peek() == UInt8(ascii: "-") { position += 1 }
        if peek() == UInt8(ascii: "0") {
            position += 1
        } else if try digits() == 0 {
            throw failure("expected a digit")
        }
        if peek() == UInt8(ascii: ".") {
            position += 1
            if try digits() == 0 { throw failure("expected a digit") }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            position += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") {
                position += 1
            }
            if try digits() == 0 { throw failure("expected a digit") }
        }
        if let byte = peek(), byte >= UInt8(ascii: "0"),
            byte <= UInt8(ascii: "9")
        {
            throw failure("leading zeros are not valid in JSON")
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    private mutating func digits() throws -> Int {
        let start = position
        while let byte = peek(), byte >= UInt8(ascii: "0"),
            byte <= UInt8(ascii: "9")
        {
            position += 1
        }
        return position - start
    }

    private mutating func consume(_ word: String) -> Bool {
        let utf8 = Array(word.utf8)
        let end = position + utf8.count
        guard end <= bytes.count, Array(bytes[position..<end]) == utf8 else {
            return false
        }
        position = end
        return true
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws {
        guard peek() == byte else { throw failure("expected \(what)") }
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

    private func failure(_ message: String) -> Failure {
        let found: String
        if let byte = peek() {
            found =
                byte >= 0x20 && byte < 0x7F
                ? "'\(Character(Unicode.Scalar(byte)))'" : hex(byte)
        } else {
            found = "the end"
        }
        return Failure(
            message: "\(message) at header byte \(position) (found \(found))")
    }
}

/// Compact JSON text, as the safetensors writers produce it.
enum JSONWriter {
    static func write(_ value: JSONValue, to out: inout String) {
        switch value {
        case .object(let members):
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += "," }
                writeString(member.key, to: &out)
                out += ":"
                write(member.value, to: &out)
            }
            out += "}"
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                write(item, to: &out)
            }
            out += "]"
        case .string(let text): writeString(text, to: &out)
        case .number(let text): out += text
        case .boolean(let flag): out += flag ? "true" : "false"
        case .null: out += "null"
        }
    }

    /// Escapes only what JSON requires; other characters go out as UTF-8.
    static func writeString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                out +=
                    "\\u" + String(repeating: "0", count: 4 - digits.count)
                    + digits
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
