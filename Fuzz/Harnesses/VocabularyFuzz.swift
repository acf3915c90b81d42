// libFuzzer harness for Vocabulary.decode(bytes:file:), the reader of
// vocabulary.txt (Vocabulary.read(path:) reads the file and calls it).
//
// Outcomes allowed: a vocabulary, or an ImportError. Every word of a
// vocabulary must be one word to the tokenizer, the words must be
// distinct and get ids 2, 3, ... in order, and fileText must read back to
// the same words.
@testable import LauncherImport

@_cdecl("LLVMFuzzerTestOneInput")
public func vocabularyFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let vocabulary: Vocabulary
    do {
        vocabulary = try Vocabulary.decode(bytes: bytes, file: "fuzz-vocabulary.txt")
    } catch is ImportError {
        return 0
    } catch {
        fuzzFail("Vocabulary.decode threw \(type(of: error)), not ImportError: \(error)")
    }
    for (index, word) in vocabulary.words.enumerated() {
        if Tokenizer.words(word) != [word] {
            fuzzFail("accepted \(word.unicodeScalars.map { $0.value }), which is not one word")
        }
        if vocabulary.id(word) != Int32(index) + Vocabulary.firstWordID {
            fuzzFail("word \(index) has id \(vocabulary.id(word))")
        }
    }
    let ids = vocabulary.encode(vocabulary.words, length: 4)
    if ids.contains(where: { $0 < 0 || Int($0) >= vocabulary.words.count + 2 }) {
        fuzzFail("encode produced an id outside 0..<\(vocabulary.words.count + 2): \(ids)")
    }
    let again: Vocabulary
    do {
        again = try Vocabulary.decode(
            bytes: Array(vocabulary.fileText.utf8), file: "roundtrip-vocabulary.txt")
    } catch {
        fuzzFail("fileText does not read back: \(error)")
    }
    if !sameBytes(again.words, vocabulary.words) {
        fuzzFail("round trip changed the words: \(vocabulary.words) -> \(again.words)")
    }
    return 0
}
