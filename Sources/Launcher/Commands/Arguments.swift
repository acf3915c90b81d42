/// One option a command accepts, for parsing and for `--help`.
struct OptionSpec {
    /// The name without the leading dashes, e.g. `batch-size`.
    let name: String
    /// The placeholder shown in help, or nil for a flag without a value.
    let value: String?
    /// One line of help.
    let help: String

    init(_ name: String, value: String? = nil, help: String) {
        self.name = name
        self.value = value
        self.help = help
    }
}

/// A mistake on the command line; printed with a pointer to `--help`.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// The arguments of one command, checked against its declared options.
///
/// Accepts `--name value` and `--name=value`. Unknown options, a missing
/// value and a repeated option are errors, because a silently ignored typo
/// in a training command costs a whole run.
struct ParsedArguments {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []
    /// True when `--help` or `-h` was given.
    private(set) var wantsHelp = false

    init(_ arguments: [String], options: [OptionSpec]) throws {
        let specs = Dictionary(
            options.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var index = 0
        while index < arguments.count {
            let word = arguments[index]
            index += 1
            if word == "--help" || word == "-h" {
                wantsHelp = true
                continue
            }
            guard word.hasPrefix("--"), word.count > 2 else {
                throw UsageError("unexpected argument '\(word)'")
            }
            var name = String(word.dropFirst(2))
            var inlineValue: String?
            if let eq = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let spec = specs[name] else {
                throw UsageError("unknown option '--\(name)'")
            }
            if values[name] != nil || flags.contains(name) {
                throw UsageError("option '--\(name)' given twice")
            }
            if spec.value == nil {
                if inlineValue != nil {
                    throw UsageError("option '--\(name)' takes no value")
                }
                flags.insert(name)
                continue
            }
            if let inlineValue {
                values[name] = inlineValue
            } else if index < arguments.count {
                values[name] = arguments[index]
                index += 1
            } else {
                throw UsageError("option '--\(name)' needs a value")
            }
        }
    }

    /// The value of `--name`, or nil when it was not given.
    func string(_ name: String) -> String? { values[name] }

    /// Whether the flag `--name` was given.
    func flag(_ name: String) -> Bool { flags.contains(name) }

    /// The value of `--name` as an integer in `range`, or `fallback`.
    func int(
        _ name: String, default fallback: Int,
        in range: ClosedRange<Int> = Int.min...Int.max
    ) throws -> Int {
        guard let text = values[name] else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError(
                "option '--\(name)' expects an integer in "
                    + "\(range.lowerBound)...\(range.upperBound), "
                    + "got '\(text)'")
        }
        return value
    }

    /// The value of `--name` as a finite number satisfying `valid`.
    func double(
        _ name: String, default fallback: Double,
        expected: String = "a finite number",
        _ valid: (Double) -> Bool = { _ in true }
    ) throws -> Double {
        guard let text = values[name] else { return fallback }
        guard let value = Double(text), value.isFinite, valid(value) else {
            throw UsageError(
                "option '--\(name)' expects \(expected), got '\(text)'")
        }
        return value
    }

    /// The value of `--name` as a comma-separated list of numbers.
    func doubles(_ name: String, count: Int, default fallback: [Double])
        throws -> [Double]
    {
        guard let text = values[name] else { return fallback }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let numbers = parts.compactMap { Double($0.trimmingWhitespace()) }
        guard numbers.count == count, numbers.allSatisfy(\.isFinite) else {
            throw UsageError(
                "option '--\(name)' expects \(count) comma-separated "
                    + "numbers, got '\(text)'")
        }
        return numbers
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return s
    }
}

/// Formats the help text of one command.
func helpText(
    command: String, summary: String, options: [OptionSpec]
) -> String {
    var lines = [
        "usage: headline-trainer \(command) [options]", "", summary, "",
    ]
    lines.append("options:")
    let heads = options.map { spec in
        "  --\(spec.name)" + (spec.value.map { " \($0)" } ?? "")
    }
    let width = min(34, (heads.map(\.count).max() ?? 0) + 2)
    for (head, spec) in zip(heads, options) {
        let pad =
            head.count < width
            ? String(repeating: " ", count: width - head.count)
            : "\n"
                + String(repeating: " ", count: width)
        lines.append(head + pad + spec.help)
    }
    lines.append(
        "  --help" + String(repeating: " ", count: width - 8)
            + "show this help")
    return lines.joined(separator: "\n")
}
