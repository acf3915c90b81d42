import Foundation

/// Text to word ids with the conventions of Keras' `Tokenizer(num_words=V,
/// oov_token=...)` followed by `pad_sequences(maxlen=T)`:
///
/// - the text is lower-cased, then split into words: maximal runs of
///   letters (any script, with the combining marks that follow them),
///   decimal digits and apostrophes. Everything else separates words, so
///   emoji and symbols are never words. Both the ASCII
///   apostrophe ' and the typographic one ’ (U+2019) count as apostrophes,
///   because Keras' default filters remove neither, so "don’t" stays one
///   word there too; the two spellings remain different words;
/// - id 0 is padding, id 1 is any word outside the vocabulary, and the
///   V-2 most frequent words of the training rows get ids 2...V-1, the most
///   frequent first, ties broken by which word appeared first;
/// - sequences are cut and padded at the front: the last T words are kept,
///   and a shorter sequence gets zeros before it.
enum Tokenizer {
    /// The words of `text`, in order.
    static func words(_ text: String) -> [String] {
        var result: [String] = []
        var current = String.UnicodeScalarView()
        for scalar in text.lowercased().unicodeScalars {
            if isWordScalar(scalar) {
                current.append(scalar)
            } else if !current.isEmpty, isWordContinuingMark(scalar) {
                current.append(scalar)
            } else if !current.isEmpty {
                result.append(String(current))
                current = String.UnicodeScalarView()
            }
        }
        if !current.isEmpty { result.append(String(current)) }
        return result
    }

    static func isWordScalar(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 {
            return (value >= 0x61 && value <= 0x7A)  // a-z
                || (value >= 0x30 && value <= 0x39)  // 0-9
                || (value >= 0x41 && value <= 0x5A)  // A-Z (not after lowercasing)
                || value == 0x27  // '
        }
        if value == 0x2019 { return true }  // ’
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter,
            .modifierLetter, .otherLetter, .decimalNumber:
            return true
        default:
            return false
        }
    }

    /// A combining mark belongs to the word it follows (the accent of a
    /// decomposed "é"); it starts no word of its own. Variation selectors
    /// are marks too, but only choose how a symbol looks (the emoji form of
    /// ❤ is ❤ followed by U+FE0F), so they are never part of a word.
    static func isWordContinuingMark(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if (0xFE00...0xFE0F).contains(value)
            || (0xE0100...0xE01EF).contains(value)
        {
            return false
        }
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }
}

/// The word list of a vocabulary: `words[k]` has id `k + 2`.
///
/// On disk (vocabulary.txt) it is one word per line, in id order, starting
/// with id 2 (ids 0 = padding and 1 = out of vocabulary have no line). A
/// vocabulary of size V holds at most V-2 words; it has fewer when the
/// training rows have fewer distinct words.
struct Vocabulary {
    static let paddingID: Int32 = 0
    static let outOfVocabularyID: Int32 = 1
    static let firstWordID: Int32 = 2

    let words: [String]
    private let ids: [String: Int32]

    init(words: [String]) {
        self.words = words
        var ids: [String: Int32] = [:]
        ids.reserveCapacity(words.count)
        for (index, word) in words.enumerated() {
            ids[word] = Int32(index) + Self.firstWordID
        }
        self.ids = ids
    }

    /// The `size - 2` most frequent words of `texts` (lists of words),
    /// ties broken by first appearance.
    static func build<S: Sequence>(from texts: S, size: Int) -> Vocabulary
    where S.Element == [String] {
        var counts: [String: Int] = [:]
        var order: [String] = []
        for text in texts {
            for word in text {
                if let count = counts[word] {
                    counts[word] = count + 1
                } else {
                    counts[word] = 1
                    order.append(word)
                }
            }
        }
        // `order` is by first appearance; a stable sort on the count
        // keeps that order among equal counts.
        let ranked = order.enumerated().map { ($0.offset, counts[$0.element]!) }
            .sorted { a, b in a.1 != b.1 ? a.1 > b.1 : a.0 < b.0 }
        let kept = ranked.prefix(max(0, size - 2)).map { order[$0.0] }
        return Vocabulary(words: kept)
    }

    /// The id of `word`: its vocabulary id, or 1 when it has none.
    func id(_ word: String) -> Int32 { ids[word] ?? Self.outOfVocabularyID }

    /// Ids of `words`, front-truncated and front-padded to `length`.
    func encode(_ words: [String], length: Int) -> [Int32] {
        var result = [Int32](repeating: Self.paddingID, count: length)
        let kept = words.suffix(length)
        var slot = length - kept.count
        for word in kept {
            result[slot] = id(word)
            slot += 1
        }
        return result
    }

    /// The text of vocabulary.txt: one word per line, ending in a newline.
    var fileText: String {
        words.map { $0 + "\n" }.joined()
    }

    /// Reads a vocabulary.txt; every line must be one word as `Tokenizer`
    /// would produce it, with no repeats.
    static func read(path: String) throws -> Vocabulary {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImportError(file: path, "cannot read the vocabulary file")
        }
        return try decode(bytes: [UInt8](data), file: path)
    }

    /// Parses the bytes of a vocabulary.txt as `read(path:)` does; `file`
    /// is only used in messages. The fuzz harness drives this directly.
    static func decode(bytes: [UInt8], file path: String) throws -> Vocabulary {
        guard let text = String(validating: bytes, as: UTF8.self)
        else {
            throw ImportError(file: path, "the vocabulary file is not UTF-8")
        }
        var lines = text.split(
            separator: "\n", omittingEmptySubsequences: false
        )
        .map(String.init)
        if lines.last == "" { lines.removeLast() }
        var seen: [String: Int] = [:]
        for (index, word) in lines.enumerated() {
            let line = index + 1
            if Tokenizer.words(word) != [word] {
                throw ImportError(
                    file: path, line: line,
                    "expected one lower-case word per line, got "
                        + quotedForMessage(word))
            }
            if let earlier = seen[word] {
                throw ImportError(
                    file: path, line: line,
                    "the word \(quotedForMessage(word)) is also on line "
                        + "\(earlier)")
            }
            seen[word] = line
        }
        return Vocabulary(words: lines)
    }
}
