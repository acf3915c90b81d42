import XCTest

@testable import Launcher

final class TokenizerTests: XCTestCase {
    func testWordsLowerCasePunctuationAndApostrophes() {
        XCTAssertEqual(
            Tokenizer.words("Don't STOP—the U.S. 2017-07-14, it’s #LIVE!"),
            [
                "don't", "stop", "the", "u", "s", "2017", "07", "14", "it’s",
                "live",
            ])
        XCTAssertEqual(
            Tokenizer.words("Ünïcode Straße naïve café"),
            ["ünïcode", "straße", "naïve", "café"])
        XCTAssertEqual(Tokenizer.words("  ...  !!! "), [])
        XCTAssertEqual(Tokenizer.words("a_b\nc\td"), ["a", "b", "c", "d"])
        // Emoji (with or without a variation selector) are not words; a
        // combining accent stays with its letter and starts no word.
        XCTAssertEqual(
            Tokenizer.words("❤️ 😂👌 \u{0301}x caf\u{0065}\u{0301}"),
            ["x", "caf\u{0065}\u{0301}"])
        XCTAssertEqual(Tokenizer.words("I ❤️NY"), ["i", "ny"])
    }

    func testVocabularyOrderTiesByFirstAppearance() {
        // counts: b 3, a 2, c 2, d 1, e 1; a appears before c, d before e.
        let texts = [["d", "a", "b"], ["c", "b", "e"], ["a", "c", "b"]]
        let v = Vocabulary.build(from: texts, size: 100)
        XCTAssertEqual(v.words, ["b", "a", "c", "d", "e"])
        XCTAssertEqual(v.id("b"), 2)
        XCTAssertEqual(v.id("a"), 3)
        XCTAssertEqual(v.id("e"), 6)
        XCTAssertEqual(v.id("zzz"), 1)
    }

    func testExactlyVMinus2WordsGetIds() {
        let texts = [["d", "a", "b"], ["c", "b", "e"], ["a", "c", "b"]]
        let v = Vocabulary.build(from: texts, size: 5)  // ids 2, 3, 4
        XCTAssertEqual(v.words, ["b", "a", "c"])
        XCTAssertEqual(v.id("c"), 4)
        XCTAssertEqual(v.id("d"), 1)  // fourth word: out of vocabulary
        XCTAssertEqual(Vocabulary.build(from: texts, size: 2).words, [])
    }

    func testFrontPaddingAndFrontTruncation() {
        let v = Vocabulary(words: ["the", "cat", "sat"])  // 2, 3, 4
        XCTAssertEqual(v.encode(["cat", "sat"], length: 5), [0, 0, 0, 3, 4])
        XCTAssertEqual(
            v.encode(["the", "cat", "dog", "sat", "the"], length: 3), [1, 4, 2])
        XCTAssertEqual(v.encode(["sat", "cat", "the"], length: 3), [4, 3, 2])
    }

    func testEndToEndFromText() {
        let training = ["The cat, the HAT.", "A cat's hat; the end"].map(
            Tokenizer.words)
        // the 3, hat 2, cat 1, a 1, cat's 1, end 1
        let v = Vocabulary.build(from: training, size: 6)  // 4 words
        XCTAssertEqual(v.words, ["the", "hat", "cat", "a"])
        XCTAssertEqual(
            v.encode(Tokenizer.words("The END of the cat's hat"), length: 8),
            [0, 0, 2, 1, 1, 2, 1, 3])
    }

    func testVocabularyFileRoundTripAndChecks() throws {
        let dir = NSTemporaryDirectory() + "vocab-\(UUID().uuidString)"
        try FileManager.default.createDirectory(
            atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/vocabulary.txt"
        let v = Vocabulary(words: ["b", "a", "don't"])
        try v.fileText.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Vocabulary.read(path: path).words, v.words)
        XCTAssertEqual(try loadVocabulary(path: path, size: 5).words, v.words)
        XCTAssertThrowsError(try loadVocabulary(path: path, size: 10000)) {
            error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("5"), message)
            XCTAssertTrue(message.contains("10000"), message)
            XCTAssertTrue(message.hasPrefix(path), message)
        }
        try "b\nTwo Words\n".write(
            toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Vocabulary.read(path: path)) { error in
            XCTAssertTrue("\(error)".contains("line 2"), "\(error)")
        }
    }
}
